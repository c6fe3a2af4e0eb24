"""`make kube-up` / `make kube-down`: a local Kubernetes API (etcd + kube-apiserver) that outlives
the command, for the operator, kubectl and helm during development.

State lives in `.dev/kube/` (certificates, etcd data, logs, pid files, ports in `state.json`); the
admin kubeconfig is `.dev/kubeconfig`. `kube-up` twice is safe: when both processes run and the
API answers, it says so and exits 0. A restart keeps the certificates, the data and, when they are
still free, the ports, so an existing kubeconfig keeps working.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
from typing import Any

from exchange_devtools.engines.base import REPO_ROOT, port_open, stop_pid
from exchange_devtools.engines.etcd import ETCD_BIN, EtcdServer, etcd_healthy
from exchange_devtools.engines.kube import (
    KUBE_APISERVER_BIN,
    KubeApiServer,
    Pki,
    apiserver_ready,
    write_kubeconfig,
)

DEV_DIR = REPO_ROOT / ".dev"
STATE_DIR = DEV_DIR / "kube"
KUBECONFIG = DEV_DIR / "kubeconfig"
STATE_FILE = STATE_DIR / "state.json"
ETCD_DIR = STATE_DIR / "etcd"
APISERVER_NAME = "kube_apiserver"
# pid file -> the binary that must be running under that pid (guards against a recycled pid)
PID_FILES: dict[Path, Path] = {
    STATE_DIR / f"{APISERVER_NAME}.pid": KUBE_APISERVER_BIN,
    ETCD_DIR / "etcd.pid": ETCD_BIN,
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


def _healthy(state: dict[str, Any]) -> bool:
    if not state or not all(_pid_running(f, b) for f, b in PID_FILES.items()):
        return False
    with contextlib.suppress(Exception):
        return etcd_healthy(str(state["etcd_url"])) and apiserver_ready(str(state["server"]), Pki(STATE_DIR / "pki"))
    return False


def _print_access(server: str) -> None:
    print(f"kube-apiserver: {server}")
    print(f"export KUBECONFIG={KUBECONFIG}")


def _free(*ports: int) -> bool:
    return all(p > 0 and not port_open(p) for p in ports)


def up(argv: list[str]) -> int:
    argparse.ArgumentParser(
        prog="python -m exchange_devtools kube-up",
        description="Start etcd + kube-apiserver detached; state in .dev/kube, kubeconfig in .dev/kubeconfig.",
    ).parse_args(argv)
    state = _read_state()
    if _healthy(state):
        if not KUBECONFIG.exists():
            write_kubeconfig(KUBECONFIG, str(state["server"]), Pki(STATE_DIR / "pki"))
        print("local control plane already running")
        _print_access(str(state["server"]))
        return 0
    _stop_all(quiet=True)  # half-running leftovers (one process died, or the API never answered)

    client, peer = int(state.get("etcd_client_port", 0)), int(state.get("etcd_peer_port", 0))
    if not _free(client, peer):
        client = peer = 0
    etcd = EtcdServer(ETCD_DIR, client_port=client, peer_port=peer, fast=False)
    etcd.engine.detach = True
    etcd.start()
    try:
        pki = Pki(STATE_DIR / "pki").ensure()
        port = int(state.get("apiserver_port", 0))
        apiserver = KubeApiServer(
            STATE_DIR, etcd_url=etcd.client_url, pki=pki, name=APISERVER_NAME, port=port if _free(port) else 0
        )
        apiserver.engine.detach = True
        apiserver.start()
    except BaseException:
        etcd.stop()
        raise
    write_kubeconfig(KUBECONFIG, apiserver.server, pki)
    STATE_FILE.write_text(
        json.dumps(
            {
                "server": apiserver.server,
                "apiserver_port": apiserver.port,
                "etcd_url": etcd.client_url,
                "etcd_client_port": etcd.client_port,
                "etcd_peer_port": etcd.peer_port,
            },
            indent=2,
        )
        + "\n"
    )
    print(
        f"etcd ready in {etcd.engine.ready_seconds:.1f}s (pid {etcd.engine.pid}), "
        f"kube-apiserver ready in {apiserver.engine.ready_seconds:.1f}s (pid {apiserver.engine.pid}); "
        f"logs in {STATE_DIR.relative_to(REPO_ROOT)}/"
    )
    _print_access(apiserver.server)
    return 0


def _stop_all(*, quiet: bool) -> bool:
    """Stop kube-apiserver, then etcd, via their pid files; True when something was running."""
    stopped = False
    for pid_file, binary in PID_FILES.items():
        pid = _pid_running(pid_file, binary)
        if pid is not None and stop_pid(pid):
            stopped = True
            if not quiet:
                print(f"stopped {binary.name} (pid {pid})")
        with contextlib.suppress(FileNotFoundError):
            pid_file.unlink()
    return stopped


def down(argv: list[str]) -> int:
    argparse.ArgumentParser(
        prog="python -m exchange_devtools kube-down",
        description="Stop the control plane `kube-up` started (state in .dev/kube is kept).",
    ).parse_args(argv)
    if not _stop_all(quiet=False):
        print("local control plane was not running")
    return 0
