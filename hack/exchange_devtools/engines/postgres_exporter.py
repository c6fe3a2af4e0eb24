"""postgres_exporter as a local process: Postgres's own metrics (connections, transactions, locks,
WAL, database size) for the Prometheus of `make dev` and the observability tests.

Built by `hack/install/postgres_exporter.sh`. It logs in with the DSN it is given (the local
cluster's superuser in `make dev`); the settings collector is off (hundreds of `pg_settings_*`
series nobody charts). Ready once `/metrics` reports `pg_up 1`.
"""

from __future__ import annotations

import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from exchange_devtools.engines.base import BIN_DIR, EngineProcess, free_port, require_binary, start_on_free_ports

PG_EXPORTER_BIN = BIN_DIR / "postgres_exporter"


def exporter_dsn(dsn: str) -> str:
    """`dsn` with `sslmode=disable` unless it names one: the exporter's driver defaults to
    `require`, and the local cluster serves plain TCP on loopback."""
    parts = urllib.parse.urlsplit(dsn)
    query = dict(urllib.parse.parse_qsl(parts.query))
    query.setdefault("sslmode", "disable")
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


@dataclass
class PostgresExporter:
    """One postgres_exporter on loopback; `metrics_url` is what Prometheus scrapes."""

    workdir: Path
    dsn: str
    name: str = "postgres-exporter"
    port: int = 0
    """0 = a free port at start."""
    detach: bool = False
    timeout: float = 30.0
    engine: EngineProcess = field(init=False)

    def __post_init__(self) -> None:
        self.engine = EngineProcess(
            name=self.name,
            argv=[],
            workdir=self.workdir,
            ready=self._ready,
            env={"DATA_SOURCE_NAME": exporter_dsn(self.dsn)},
            timeout=self.timeout,
            detach=self.detach,
        )

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.address}/metrics"

    def env(self) -> dict[str, str]:
        return {"POSTGRES_EXPORTER_ADDRESS": self.address}

    def _ready(self) -> bool:
        with urllib.request.urlopen(self.metrics_url, timeout=2) as resp:
            return b"\npg_up 1" in resp.read()

    def start(self) -> PostgresExporter:
        require_binary(PG_EXPORTER_BIN, "postgres_exporter.sh")
        fixed = bool(self.port)

        def prepare() -> None:
            if not fixed:
                self.port = free_port()
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.engine.argv = [
                str(PG_EXPORTER_BIN),
                f"--web.listen-address={self.address}",
                "--disable-settings-metrics",
                "--log.level=warn",
            ]

        start_on_free_ports(self.engine, prepare, fixed=fixed)
        return self

    def stop(self) -> None:
        self.engine.stop()
