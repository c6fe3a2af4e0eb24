"""The local node's components as host processes: containerd, controller-manager, scheduler,
kubelet and kube-proxy, next to the etcd + kube-apiserver of `kube.py`.

Pure configuration lives here (file contents, flags); `kube_stack.py` decides what to start and
when. One node per machine: the node owns a fixed name on the host (`BRIDGE`) and a fixed
address, `NODE_IP`, on the loopback link, so pods reach the API server through
`kubernetes.default` (an API server advertising loopback is unreachable from a pod) while nothing
listens on the machine's real interfaces. Why 1.34 and cgroup v1 settings: ADR 0007.
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from exchange_devtools.engines.base import BIN_DIR, CACHE_DIR, EngineProcess
from exchange_devtools.engines.kube import Pki

NODE_NAME = "exchange-node"
NODE_IP = "198.18.0.2"
"""RFC 2544's benchmarking range: never routed, so it cannot clash with a real network."""
BRIDGE = "exchange-br0"
POD_CIDR = "10.244.0.0/16"
NODE_POD_CIDR = "10.244.0.0/24"
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
DNS_SERVICE_IP = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"
APISERVER_PORT = 6443
CONTROLLER_MANAGER_PORT = 10257
SCHEDULER_PORT = 10259
KUBELET_PORT = 10250
KUBELET_HEALTHZ_PORT = 10248
PROXY_HEALTHZ_PORT = 10256
PROXY_METRICS_PORT = 10249
CNI_BIN_DIR = Path("/usr/lib/cni")
RUNC = Path("/usr/sbin/runc")
PAUSE_IMAGE = "localhost/pause:3.10"

CONTAINERD_BIN = BIN_DIR / "containerd"
CTR_BIN = BIN_DIR / "ctr"
CRICTL_BIN = BIN_DIR / "crictl"
KUBELET_BIN = BIN_DIR / "kubelet"
CONTROLLER_MANAGER_BIN = BIN_DIR / "kube-controller-manager"
SCHEDULER_BIN = BIN_DIR / "kube-scheduler"
PROXY_BIN = BIN_DIR / "kube-proxy"
NODE_BINARIES = {
    CONTAINERD_BIN: "node.sh",
    CTR_BIN: "node.sh",
    CRICTL_BIN: "node.sh",
    KUBELET_BIN: "kube.sh",
    CONTROLLER_MANAGER_BIN: "kube.sh",
    SCHEDULER_BIN: "kube.sh",
    PROXY_BIN: "kube.sh",
}


@dataclass(frozen=True)
class NodePaths:
    """Where the node keeps its state. Images outlive `kube-down` in the cache; the rest is per checkout."""

    state: Path

    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def etc(self) -> Path:
        return self.state / "etc"

    @property
    def run(self) -> Path:
        return self.state / "run"

    @property
    def containerd_socket(self) -> Path:
        return self.run / "containerd.sock"

    @property
    def containerd_state(self) -> Path:
        return self.run / "containerd"

    @property
    def containerd_root(self) -> Path:
        return CACHE_DIR / "node" / "containerd"

    @property
    def kubelet_root(self) -> Path:
        return self.state / "kubelet"

    @property
    def pod_logs(self) -> Path:
        return self.state / "pods-logs"

    @property
    def cni_conf(self) -> Path:
        return self.etc / "cni"

    @property
    def cni_data(self) -> Path:
        return self.state / "cni"

    @property
    def storage(self) -> Path:
        """Where local-path volumes live (PersistentVolumes of the default StorageClass)."""
        return self.state / "volumes"

    @property
    def host_state(self) -> Path:
        """The host's values before the node changed them (host.py)."""
        return self.state / "host-before.json"

    def mounted_roots(self) -> list[Path]:
        return [self.kubelet_root, self.run, self.containerd_root]


def node_pki(pki: Pki) -> dict[str, tuple[Path, Path]]:
    """Every component's certificate: API server serving, component clients, kubelet serving."""
    local = ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc")
    return {
        "apiserver": pki.issue(
            "apiserver-node",
            "kube-apiserver",
            server=True,
            dns_names=(*local, f"kubernetes.default.svc.{CLUSTER_DOMAIN}"),
            ips=("127.0.0.1", NODE_IP, KUBERNETES_SERVICE_IP),
        ),
        "apiserver-kubelet-client": pki.issue(
            "apiserver-kubelet-client", "kube-apiserver-kubelet-client", organizations=("system:masters",)
        ),
        "controller-manager": pki.issue("controller-manager", "system:kube-controller-manager"),
        "scheduler": pki.issue("scheduler", "system:kube-scheduler"),
        "proxy": pki.issue("kube-proxy", "system:kube-proxy"),
        "kubelet": pki.issue("kubelet-client", f"system:node:{NODE_NAME}", organizations=("system:nodes",)),
        "kubelet-serving": pki.issue("kubelet-serving", NODE_NAME, server=True, dns_names=(NODE_NAME,), ips=(NODE_IP,)),
    }


def apiserver_node_flags(pki: Pki, certs: dict[str, tuple[Path, Path]]) -> list[str]:
    serving_cert, serving_key = certs["apiserver"]
    kubelet_cert, kubelet_key = certs["apiserver-kubelet-client"]
    return [
        f"--bind-address={NODE_IP}",
        f"--advertise-address={NODE_IP}",
        f"--tls-cert-file={serving_cert}",
        f"--tls-private-key-file={serving_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        "--allow-privileged=false",
        f"--kubelet-client-certificate={kubelet_cert}",
        f"--kubelet-client-key={kubelet_key}",
        f"--kubelet-certificate-authority={pki.ca_cert}",
        "--kubelet-preferred-address-types=InternalIP",
        "--enable-priority-and-fairness=false",
    ]


def containerd_config(paths: NodePaths) -> str:
    """containerd 2.x config (version 2 syntax, migrated at start).

    `restrict_oom_score_adj`: without CAP_SYS_RESOURCE (as in CI sandboxes) a pod sandbox asking
    for a negative OOM score fails with "can't get final child's PID from pipe".
    """
    return f"""version = 2
root = "{paths.containerd_root}"
state = "{paths.containerd_state}"
# NRI would open a socket under /var/run/nri; nothing here uses it.
disabled_plugins = ["io.containerd.nri.v1.nri"]
[grpc]
  address = "{paths.containerd_socket}"
[ttrpc]
  address = "{paths.containerd_socket}.ttrpc"
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{paths.containerd_state}/opt"
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "{PAUSE_IMAGE}"
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
          BinaryName = "{RUNC}"
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "{CNI_BIN_DIR}"
      conf_dir = "{paths.cni_conf}"
"""


def cni_config(paths: NodePaths) -> dict[str, object]:
    """Bridge + host-local on the node's pod range; portmap for hostPorts; `firewall` accepts pod
    traffic in FORWARD even where a Docker daemon once set its policy to DROP."""
    return {
        "cniVersion": "1.0.0",
        "name": "exchange",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": NODE_POD_CIDR}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(paths.cni_data),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "firewall", "backend": "iptables"},
        ],
    }


def kubelet_config(paths: NodePaths, pki: Pki, certs: dict[str, tuple[Path, Path]]) -> dict[str, object]:
    cert, key = certs["kubelet-serving"]
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": NODE_IP,
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": KUBELET_HEALTHZ_PORT,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki.ca_cert)},
        },
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(cert),
        "tlsPrivateKeyFile": str(key),
        # cgroup v1 hosts: kubelet 1.35.4+ refuses them by default; see ADR 0007.
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "containerRuntimeEndpoint": f"unix://{paths.containerd_socket}",
        "clusterDNS": [DNS_SERVICE_IP],
        "clusterDomain": CLUSTER_DOMAIN,
        "resolvConf": "/etc/resolv.conf",
        "podLogsDir": str(paths.pod_logs),
        "failSwapOn": False,
        "serializeImagePulls": False,
        # Images come from `make images`, never from a registry: never garbage-collect them.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "rotateCertificates": False,
        "maxPods": 110,
    }


def proxy_config(kubeconfig: Path) -> dict[str, object]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "mode": "iptables",  # no IPVS in these kernels
        "clusterCIDR": POD_CIDR,
        "hostnameOverride": NODE_NAME,
        "bindAddress": NODE_IP,
        "metricsBindAddress": f"127.0.0.1:{PROXY_METRICS_PORT}",
        "healthzBindAddress": f"127.0.0.1:{PROXY_HEALTHZ_PORT}",
        # NodePorts on the node's own address only: no route_localnet, nothing on the real interfaces.
        "nodePortAddresses": [f"{NODE_IP}/32"],
        # Zeros keep kube-proxy from rewriting the host's conntrack sysctls.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
    }


def write_json(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def _https_ok(url: str) -> bool:
    """A component's own /healthz (self-signed serving certificate, anonymous access allowed)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return _http_ok(url, ctx)


def _http_ok(url: str, ctx: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=ctx) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _path_env() -> dict[str, str]:
    # containerd finds its shim on PATH; the kubelet and kube-proxy need iptables, mount, ...
    return {"PATH": f"{BIN_DIR}:/usr/local/sbin:/usr/sbin:/sbin:{os.environ.get('PATH', '/usr/bin:/bin')}"}


def component_processes(
    paths: NodePaths, kubeconfigs: dict[str, Path], pki: Pki, *, detach: bool = True
) -> dict[str, EngineProcess]:
    """The node's processes in start order (stopped in reverse), each with its readiness probe."""
    etc, log_dir = paths.etc, paths.state
    kubelet_yaml = etc / "kubelet.json"
    proxy_yaml = etc / "kube-proxy.json"
    procs = {
        "containerd": EngineProcess(
            name="containerd",
            argv=[str(CONTAINERD_BIN), "--config", str(etc / "containerd.toml")],
            workdir=log_dir,
            ready=lambda: paths.containerd_socket.exists(),
            env=_path_env(),
        ),
        "kube-controller-manager": EngineProcess(
            name="kube-controller-manager",
            argv=[
                str(CONTROLLER_MANAGER_BIN),
                f"--kubeconfig={kubeconfigs['controller-manager']}",
                f"--authentication-kubeconfig={kubeconfigs['controller-manager']}",
                f"--authorization-kubeconfig={kubeconfigs['controller-manager']}",
                "--bind-address=127.0.0.1",
                f"--secure-port={CONTROLLER_MANAGER_PORT}",
                f"--cert-dir={paths.state / 'controller-manager-certs'}",
                f"--root-ca-file={pki.ca_cert}",
                f"--service-account-private-key-file={pki.sa_key}",
                f"--cluster-signing-cert-file={pki.ca_cert}",
                f"--cluster-signing-key-file={pki.ca_key}",
                "--use-service-account-credentials",
                "--allocate-node-cidrs",
                f"--cluster-cidr={POD_CIDR}",
                "--node-cidr-mask-size=24",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--leader-elect=false",
                "--profiling=false",
            ],
            workdir=log_dir,
            ready=lambda: _https_ok(f"https://127.0.0.1:{CONTROLLER_MANAGER_PORT}/healthz"),
        ),
        "kube-scheduler": EngineProcess(
            name="kube-scheduler",
            argv=[
                str(SCHEDULER_BIN),
                f"--kubeconfig={kubeconfigs['scheduler']}",
                f"--authentication-kubeconfig={kubeconfigs['scheduler']}",
                f"--authorization-kubeconfig={kubeconfigs['scheduler']}",
                "--bind-address=127.0.0.1",
                f"--secure-port={SCHEDULER_PORT}",
                "--leader-elect=false",
                "--profiling=false",
            ],
            workdir=log_dir,
            ready=lambda: _https_ok(f"https://127.0.0.1:{SCHEDULER_PORT}/healthz"),
        ),
        "kubelet": EngineProcess(
            name="kubelet",
            argv=[
                str(KUBELET_BIN),
                f"--config={kubelet_yaml}",
                f"--kubeconfig={kubeconfigs['kubelet']}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={NODE_IP}",
                f"--root-dir={paths.kubelet_root}",
                f"--cert-dir={paths.kubelet_root / 'pki'}",
            ],
            workdir=log_dir,
            ready=lambda: _http_ok(f"http://127.0.0.1:{KUBELET_HEALTHZ_PORT}/healthz"),
            env=_path_env(),
        ),
        "kube-proxy": EngineProcess(
            name="kube-proxy",
            argv=[str(PROXY_BIN), f"--config={proxy_yaml}"],
            workdir=log_dir,
            ready=lambda: _http_ok(f"http://127.0.0.1:{PROXY_HEALTHZ_PORT}/healthz"),
            env=_path_env(),
        ),
    }
    for proc in procs.values():
        proc.detach = detach
        proc.timeout = 90.0
    return procs


def write_configs(
    paths: NodePaths, pki: Pki, certs: dict[str, tuple[Path, Path]], kubeconfigs: dict[str, Path]
) -> None:
    """Every component's configuration file under `<state>/etc`."""
    paths.etc.mkdir(parents=True, exist_ok=True)
    (paths.etc / "containerd.toml").write_text(containerd_config(paths))
    write_json(paths.cni_conf / "10-exchange.conflist", cni_config(paths))
    write_json(paths.etc / "kubelet.json", kubelet_config(paths, pki, certs))
    write_json(paths.etc / "kube-proxy.json", proxy_config(kubeconfigs["proxy"]))
