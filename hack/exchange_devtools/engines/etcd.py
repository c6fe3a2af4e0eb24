"""etcd as a local process: the storage of the local kube-apiserver.

`EtcdServer(workdir).start()` picks free client and peer ports on 127.0.0.1, keeps its data in
`<workdir>/etcd-data` and answers once `GET /health` says healthy. Installed by
`hack/install/etcd.sh`.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from exchange_devtools.engines.base import (
    BIN_DIR,
    EngineProcess,
    free_ports,
    require_binary,
    start_on_free_ports,
)

ETCD_BIN = BIN_DIR / "etcd"
"""A free port can be taken between `free_port()` and the bind: retry with new ports."""


def etcd_healthy(client_url: str, timeout: float = 1.0) -> bool:
    """True when etcd at `client_url` reports itself healthy."""
    with urllib.request.urlopen(f"{client_url}/health", timeout=timeout) as resp:
        return bool(resp.status == 200 and json.loads(resp.read()).get("health") == "true")


@dataclass
class EtcdServer:
    """One single-member etcd cluster on loopback."""

    workdir: Path
    name: str = "etcd"
    client_port: int = 0
    """0 = pick a free port at start."""
    peer_port: int = 0
    fast: bool = True
    """`--unsafe-no-fsync`: for throwaway test data only (what controller-runtime's envtest does)."""
    timeout: float = 60.0
    engine: EngineProcess = field(init=False)

    def __post_init__(self) -> None:
        self.engine = EngineProcess(
            name=self.name, argv=[], workdir=self.workdir, ready=self._ready, timeout=self.timeout
        )

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "etcd-data"

    def _ready(self) -> bool:
        return etcd_healthy(self.client_url)

    def argv(self) -> list[str]:
        argv = [
            str(ETCD_BIN),
            "--name=exchange-local",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={self.client_url}",
            f"--advertise-client-urls={self.client_url}",
            f"--listen-peer-urls={self.peer_url}",
            f"--initial-advertise-peer-urls={self.peer_url}",
            f"--initial-cluster=exchange-local={self.peer_url}",
            "--initial-cluster-state=new",
            "--log-level=warn",
        ]
        if self.fast:
            argv.append("--unsafe-no-fsync")
        return argv

    def start(self) -> EtcdServer:
        require_binary(ETCD_BIN, "etcd.sh")
        fixed = bool(self.client_port and self.peer_port)

        def prepare() -> None:
            if not fixed:
                self.client_port, self.peer_port = free_ports(2)
            self.engine.argv = self.argv()

        start_on_free_ports(self.engine, prepare, fixed=fixed)
        return self

    def stop(self) -> None:
        self.engine.stop()
