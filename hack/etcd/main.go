// Command etcd is the etcd server (go.etcd.io/etcd/server/v3), built by hack/install/etcd.sh
// for the local Kubernetes control plane (kube-apiserver's storage) in tests and `make kube-up`.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
