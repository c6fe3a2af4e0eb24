"""`make kube-up` / `make kube-down`: a single-node Kubernetes cluster from host processes.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd (+ runc and the CNI
plugins), the kubelet and kube-proxy run as detached processes owned by this checkout; CoreDNS,
local-path-provisioner (the default StorageClass) and the Skipper ingress controller run as pods.
`kube-up` returns once the node is Ready, the `default` ServiceAccount exists, CoreDNS answers and
the ingress controller serves on `127.0.0.1:INGRESS_PORT`; it writes `.dev/kubeconfig` and
`.dev/kube.env`. Running it twice is safe: a healthy node is reused.

`kube-down` stops everything by pid, removes the pods, then undoes what the node did to the host
(`engines/host.py`): mounts, links, iptables chains, cgroups, sysctls. State (certificates, etcd
data, volumes) stays in `.dev/kube/`; images stay in the cache. Needs root.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from exchange_devtools.engines import host
from exchange_devtools.engines.base import REPO_ROOT, EngineError, port_open, require_binary, stop_pid
from exchange_devtools.engines.etcd import ETCD_BIN, EtcdServer, etcd_healthy
from exchange_devtools.engines.kube import KUBE_APISERVER_BIN, KUBECTL_BIN, KubeApiServer, Pki, write_kubeconfig
from exchange_devtools.engines.kube_node import (
    APISERVER_PORT,
    BRIDGE,
    CONTAINERD_BIN,
    CRICTL_BIN,
    NODE_BINARIES,
    NODE_IP,
    NODE_NAME,
    PROXY_BIN,
    SERVICE_CIDR,
    NodePaths,
    apiserver_node_flags,
    component_processes,
    node_pki,
    write_configs,
)

DEV_DIR = REPO_ROOT / ".dev"
STATE_DIR = DEV_DIR / "kube"
KUBECONFIG = DEV_DIR / "kubeconfig"
KUBE_ENV = DEV_DIR / "kube.env"
STATE_FILE = STATE_DIR / "state.json"
ETCD_DIR = STATE_DIR / "etcd"
APISERVER_NAME = "kube_apiserver"
PATHS = NodePaths(STATE_DIR)
COMPONENTS = ("containerd", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy")


def _binary_of(name: str) -> Path:
    return {
        "containerd": CONTAINERD_BIN,
        APISERVER_NAME: KUBE_APISERVER_BIN,
        "etcd": ETCD_BIN,
        "kube-proxy": PROXY_BIN,
    }.get(name) or next(b for b in NODE_BINARIES if b.name == name)


def _pid_files() -> dict[str, Path]:
    """Process name -> pid file, in stop order (the kubelet first, so it stops restarting pods)."""
    return {
        "kubelet": STATE_DIR / "kubelet.pid",
        "kube-proxy": STATE_DIR / "kube-proxy.pid",
        "kube-scheduler": STATE_DIR / "kube-scheduler.pid",
        "kube-controller-manager": STATE_DIR / "kube-controller-manager.pid",
        APISERVER_NAME: STATE_DIR / f"{APISERVER_NAME}.pid",
        "etcd": ETCD_DIR / "etcd.pid",
        "containerd": STATE_DIR / "containerd.pid",
    }


def _read_state() -> dict[str, Any]:
    try:
        state = json.loads(STATE_FILE.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _pid_running(pid_file: Path, binary: Path) -> int | None:
    """The pid in `pid_file` when that process is alive and runs `binary`."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return None
    return pid if cmdline and cmdline[0].decode(errors="replace") == str(binary) else None


def kubectl(*args: str, timeout: float = 60.0, check: bool = True) -> str:
    out = subprocess.run(
        [str(KUBECTL_BIN), f"--kubeconfig={KUBECONFIG}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and out.returncode != 0:
        raise EngineError(f"kubectl {' '.join(args[:3])}: {(out.stderr or out.stdout).strip()[-300:]}")
    return out.stdout


def node_ready() -> bool:
    ready = "jsonpath={.status.conditions[?(@.type=='Ready')].status}"
    out = kubectl("get", "node", NODE_NAME, "-o", ready, check=False)
    return out.strip() == "True"


def _healthy(state: dict[str, Any]) -> bool:
    if not state or not all(_pid_running(f, _binary_of(n)) for n, f in _pid_files().items()):
        return False
    with contextlib.suppress(Exception):
        return etcd_healthy(str(state["etcd_url"])) and node_ready()
    return False


def _require_everything() -> None:
    if os.geteuid() != 0:
        raise EngineError("the local node needs root (containerd, the kubelet, kube-proxy and CNI change the host)")
    for binary, installer in {**NODE_BINARIES, KUBE_APISERVER_BIN: "kube.sh", KUBECTL_BIN: "kube.sh"}.items():
        require_binary(binary, installer)
    require_binary(ETCD_BIN, "etcd.sh")
    if len(str(PATHS.containerd_socket)) > 100:  # sun_path holds 108 bytes
        raise EngineError(f"the checkout's path is too long for containerd's socket ({PATHS.containerd_socket})")


def _kubeconfigs(server: str, pki: Pki, certs: dict[str, tuple[Path, Path]]) -> dict[str, Path]:
    etc = PATHS.etc
    return {
        name: write_kubeconfig(etc / f"{name}.kubeconfig", server, pki, client=certs[name])
        for name in ("controller-manager", "scheduler", "kubelet", "proxy")
    }


def _write_env(ingress_url: str) -> None:
    KUBE_ENV.write_text(
        f"export KUBECONFIG={KUBECONFIG}\n"
        f"export INGRESS_URL={ingress_url}\n"
        f"export CONTAINERD_ADDRESS={PATHS.containerd_socket}\n"
    )


def up(argv: list[str]) -> int:
    argparse.ArgumentParser(
        prog="python -m exchange_devtools kube-up",
        description="Start a single-node cluster (state in .dev/kube, kubeconfig in .dev/kubeconfig).",
    ).parse_args(argv)
    from exchange_devtools import kube_addons as addons

    _require_everything()
    state = _read_state()
    if _healthy(state):
        if not KUBECONFIG.exists():
            write_kubeconfig(KUBECONFIG, str(state["server"]), Pki(PATHS.pki))
        _write_env(str(state["ingress_url"]))
        print(f"local node already running; ingress on {state['ingress_url']}")
        print(f"source {KUBE_ENV.relative_to(REPO_ROOT)}   # KUBECONFIG, INGRESS_URL")
        return 0
    _teardown(quiet=True)  # half-running leftovers: one process died, or a start was interrupted
    try:
        timings = _start(state, addons)
    except BaseException:
        print(f"kube-up failed; logs in {STATE_DIR.relative_to(REPO_ROOT)}/ (tearing down)")
        _teardown(quiet=True)
        raise
    print("  ".join(f"{what} {seconds:.1f}s" for what, seconds in timings.items()))
    print(f"ingress controller: {_read_state()['ingress_url']} (Skipper, Ingress class `skipper`)")
    print(f"source {KUBE_ENV.relative_to(REPO_ROOT)}   # KUBECONFIG, INGRESS_URL")
    return 0


def _start(state: dict[str, Any], addons: Any) -> dict[str, float]:
    started = time.monotonic()
    timings: dict[str, float] = {}
    host.save_host(PATHS.host_state)
    for name, value in host.NODE_SYSCTLS.items():
        host.write_sysctl(name, value)
    host.ensure_node_address(NODE_IP)
    host.reject_unrouted_services(SERVICE_CIDR)

    pki = Pki(PATHS.pki).ensure()
    certs = node_pki(pki)
    server = f"https://{NODE_IP}:{APISERVER_PORT}"
    write_kubeconfig(KUBECONFIG, server, pki)
    kubeconfigs = _kubeconfigs(server, pki, certs)
    write_configs(PATHS, pki, certs, kubeconfigs)
    PATHS.storage.mkdir(parents=True, exist_ok=True)
    procs = component_processes(PATHS, kubeconfigs, pki)

    procs["containerd"].start()
    addons.load_addon_images(PATHS.containerd_socket)
    timings["images"] = time.monotonic() - started

    client, peer = int(state.get("etcd_client_port", 0)), int(state.get("etcd_peer_port", 0))
    if not all(p > 0 and not port_open(p) for p in (client, peer)):
        client = peer = 0
    etcd = EtcdServer(ETCD_DIR, client_port=client, peer_port=peer, fast=False)
    etcd.engine.detach = True
    etcd.start()
    apiserver = KubeApiServer(
        STATE_DIR,
        etcd_url=etcd.client_url,
        pki=pki,
        name=APISERVER_NAME,
        port=APISERVER_PORT,
        host=NODE_IP,
        node=apiserver_node_flags(pki, certs),
    )
    apiserver.engine.detach = True
    apiserver.start()
    timings["api"] = time.monotonic() - started
    STATE_FILE.write_text(
        json.dumps(
            {
                "server": server,
                "etcd_url": etcd.client_url,
                "etcd_client_port": etcd.client_port,
                "etcd_peer_port": etcd.peer_port,
                "ingress_url": f"http://127.0.0.1:{addons.INGRESS_PORT}",
            },
            indent=2,
        )
        + "\n"
    )
    for name in COMPONENTS[1:]:
        procs[name].start()
    addons.wait_for("node", node_ready, 90)
    timings["node ready"] = time.monotonic() - started

    values = addons.manifest_values(PATHS)
    for manifest in addons.ADDONS:
        addons.apply([str(KUBECTL_BIN), f"--kubeconfig={KUBECONFIG}"], addons.render(manifest, values))
    addons.wait_for("the default ServiceAccount", lambda: bool(kubectl("get", "sa", "default", check=False)), 60)
    addons.wait_for("CoreDNS", lambda: addons.dns_answers(f"kubernetes.default.svc.{addons.CLUSTER_DOMAIN}"), 120)
    timings["dns"] = time.monotonic() - started
    addons.wait_for("the ingress controller", addons.ingress_answers, 120)
    timings["ingress"] = time.monotonic() - started
    _write_env(f"http://127.0.0.1:{addons.INGRESS_PORT}")
    return timings


def _stop(name: str, quiet: bool) -> bool:
    pid_file = _pid_files()[name]
    pid = _pid_running(pid_file, _binary_of(name))
    stopped = pid is not None and stop_pid(pid, timeout=30)
    if stopped and not quiet:
        print(f"stopped {name} (pid {pid})")
    with contextlib.suppress(FileNotFoundError):
        pid_file.unlink()
    return stopped


def _remove_pods() -> None:
    """Stop and remove every pod sandbox through the CRI, so the CNI plugins delete their veths and rules."""
    if not PATHS.containerd_socket.exists() or not CRICTL_BIN.exists():
        return
    endpoint = f"unix://{PATHS.containerd_socket}"
    subprocess.run(
        [str(CRICTL_BIN), "--runtime-endpoint", endpoint, "--timeout", "60s", "rmp", "--all", "--force"],
        capture_output=True,
        timeout=180,
        check=False,
    )


def _kill_shims() -> None:
    """containerd's runc shims outlive containerd; kill the ones serving this node's containerd."""
    markers = (str(PATHS.containerd_state).encode(), str(PATHS.containerd_socket).encode())
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (proc / "cmdline").read_bytes()
            if b"containerd-shim" in cmdline and any(m in cmdline for m in markers):
                stop_pid(int(proc.name), timeout=5, group=False)


def _teardown(*, quiet: bool) -> bool:
    """Stop every process, remove the pods and undo the node's changes to the host."""
    running = {n for n, f in _pid_files().items() if _pid_running(f, _binary_of(n))}
    stopped = _stop("kubelet", quiet)
    if "containerd" in running:
        _remove_pods()
    for name in ("kube-proxy", "kube-scheduler", "kube-controller-manager", APISERVER_NAME, "etcd", "containerd"):
        stopped = _stop(name, quiet) or stopped
    _kill_shims()
    if PROXY_BIN.exists():
        subprocess.run([str(PROXY_BIN), "--cleanup"], capture_output=True, timeout=60, check=False)
    host.unmount_under(*PATHS.mounted_roots())
    for veth in host.veths_on(BRIDGE):
        host.delete_link(veth)
    host.delete_link(BRIDGE)
    host.remove_node_address(NODE_IP)
    host.clean_iptables()
    host.remove_kubepods_cgroups()
    host.restore_host(PATHS.host_state)
    with contextlib.suppress(FileNotFoundError):
        KUBE_ENV.unlink()
    return stopped


def down(argv: list[str]) -> int:
    argparse.ArgumentParser(
        prog="python -m exchange_devtools kube-down",
        description="Stop the local node and undo its changes to the host (state in .dev/kube is kept).",
    ).parse_args(argv)
    if os.geteuid() != 0:
        raise EngineError("the local node needs root to stop (it removes links, mounts and iptables rules)")
    if not _teardown(quiet=False):
        print("local node was not running (host cleaned up anyway)")
    return 0
