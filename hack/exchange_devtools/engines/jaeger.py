"""Jaeger v2 as a local process: the trace backend of `make dev` and of the tracing tests.

`jaeger_server(workdir).start()` writes a collector configuration with free ports on 127.0.0.1:
OTLP over HTTP in (what the services export to), Jaeger's query API and UI out (`/api/traces`,
`/api/services`), traces kept in memory, the collector's own metrics off. Ready once the health
check answers and the query API lists services. Installed by `hack/install/jaeger.sh`.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exchange_devtools.engines.base import (
    BIN_DIR,
    EngineProcess,
    free_ports,
    require_binary,
    start_on_free_ports,
)

JAEGER_BIN = BIN_DIR / "jaeger"
"""A free port can be taken between `free_port()` and the bind: retry with new ones."""
MAX_TRACES = 100_000
"""Traces the in-memory store keeps (oldest dropped first)."""

_CONFIG = """\
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    resource:
      service.name: jaeger
    metrics:
      level: none
    logs:
      level: warn
extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:{health}
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:{query}
    grpc:
      endpoint: 127.0.0.1:{query_grpc}
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: {max_traces}
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp}
processors:
  batch:
    timeout: 200ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"""


@dataclass
class JaegerServer:
    """One Jaeger v2 (collector + in-memory storage + query API) on loopback."""

    workdir: Path
    name: str = "jaeger"
    otlp_port: int = 0
    """OTLP/HTTP receiver; 0 = pick free ports at start (all four)."""
    query_port: int = 0
    query_grpc_port: int = 0
    health_port: int = 0
    detach: bool = False
    timeout: float = 60.0
    engine: EngineProcess = field(init=False)

    def __post_init__(self) -> None:
        self.engine = EngineProcess(
            name=self.name,
            argv=[],
            workdir=self.workdir,
            ready=self._ready,
            timeout=self.timeout,
            detach=self.detach,
        )

    @property
    def otlp_endpoint(self) -> str:
        """What `OTEL_EXPORTER_OTLP_ENDPOINT` is set to (the exporter appends `/v1/traces`)."""
        return f"http://127.0.0.1:{self.otlp_port}"

    @property
    def query_url(self) -> str:
        """The query API's base: `$JAEGER_URL/api/traces?service=ingest` works (the UI is at `/`)."""
        return f"http://127.0.0.1:{self.query_port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "jaeger.yaml"

    def env(self) -> dict[str, str]:
        """The exports a client of this backend needs (`.dev/env`, the services' environment)."""
        return {
            "JAEGER_URL": self.query_url,
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.otlp_endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        }

    def _ready(self) -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/status", timeout=1) as resp:
            if resp.status != 200:
                return False
        self.services()
        return True

    def services(self) -> list[str]:
        """The services that have sent spans."""
        return list(self._get("/api/services").get("data") or [])

    def traces(self, service: str, **params: str) -> list[dict[str, Any]]:
        """`/api/traces?service=...` (Jaeger's JSON: each trace's `spans` and `processes`)."""
        return list(self._get("/api/traces", service=service, **params).get("data") or [])

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        """One trace by its id (32 hex digits), or None when the backend has none of its spans."""
        try:
            found = self._get(f"/api/traces/{trace_id}").get("data") or []
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise
        return dict(found[0]) if found else None

    def _get(self, path: str, **params: str) -> dict[str, Any]:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.query_url}{path}{query}", timeout=5) as resp:
            body: dict[str, Any] = json.loads(resp.read())
        return body

    def start(self) -> JaegerServer:
        require_binary(JAEGER_BIN, "jaeger.sh")
        fixed = bool(self.otlp_port and self.query_port and self.query_grpc_port and self.health_port)

        def prepare() -> None:
            if not fixed:
                self.otlp_port, self.query_port, self.query_grpc_port, self.health_port = free_ports(4)
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.config_path.write_text(
                _CONFIG.format(
                    otlp=self.otlp_port,
                    query=self.query_port,
                    query_grpc=self.query_grpc_port,
                    health=self.health_port,
                    max_traces=MAX_TRACES,
                )
            )
            self.engine.argv = [str(JAEGER_BIN), "--config", f"file:{self.config_path}"]

        start_on_free_ports(self.engine, prepare, fixed=fixed)
        return self

    def stop(self) -> None:
        self.engine.stop()


def jaeger_server(workdir: Path, *, name: str = "jaeger", detach: bool = False) -> JaegerServer:
    """A Jaeger on free ports with its config and log in `workdir`."""
    return JaegerServer(workdir, name=name, detach=detach)
