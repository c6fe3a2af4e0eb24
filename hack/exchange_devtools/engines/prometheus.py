"""Prometheus as a local process: scrapes what it is told, evaluates the platform's rules.

The binaries are Debian 12's (`hack/install/prometheus.sh` unpacks them into
`$EXCHANGE_CACHE/prometheus-<version>/bin`). Scrape targets are file-based service discovery:
`targets(job, [host:port, ...], labels)` writes `<workdir>/targets/<job>.json`, which Prometheus
re-reads on change, so `make dev` and the tests add and drop services without a restart. Every
target gets a `service` label (the job name unless given): the rules and dashboards select on it,
as the operator's PodMonitor sets it on a cluster. Readiness is `/-/ready`.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from exchange_devtools.engines.base import CACHE_DIR, EngineError, EngineProcess, free_port, require_binary

PROMETHEUS_VERSION = "2.42.0"  # keep equal to hack/install/prometheus.sh
INSTALLER = "prometheus.sh"
BIN = CACHE_DIR / f"prometheus-{PROMETHEUS_VERSION}" / "bin"


def promtool() -> Path:
    """The installed promtool, or a one-line EngineError naming the installer."""
    return require_binary(BIN / "promtool", INSTALLER)


@dataclass
class PrometheusServer:
    """A local Prometheus; `url` is its HTTP API's base."""

    engine: EngineProcess
    port: int
    workdir: Path
    host: str = "127.0.0.1"
    rule_files: list[Path] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        return {"PROMETHEUS_URL": self.url}

    def start(self) -> PrometheusServer:
        self.engine.start()
        return self

    def stop(self, timeout: float = 15.0) -> None:
        self.engine.stop(timeout=timeout)

    def targets(self, job: str, addresses: Iterable[str], labels: Mapping[str, str] | None = None) -> None:
        """Scrape `addresses` (host:port) as `job`; an empty list drops the job's targets."""
        write_targets(self.workdir, job, addresses, labels)

    def reload(self) -> None:
        """Re-read the configuration and rule files (`POST /-/reload`)."""
        request = urllib.request.Request(f"{self.url}/-/reload", method="POST")
        with urllib.request.urlopen(request, timeout=10) as resp:
            if resp.status != 200:
                raise EngineError(f"prometheus: reload answered {resp.status}")

    def api(self, path: str, **params: str) -> Any:
        """GET `/api/v1/<path>`; the `data` of a successful answer, else EngineError."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as resp:
                body = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}")
        if body.get("status") != "success":
            raise EngineError(f"prometheus: {path}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector (EngineError when it does not parse)."""
        data = self.api("query", query=expr)
        result: list[dict[str, Any]] = data["result"]
        return result

    def alerts(self) -> list[dict[str, Any]]:
        """Alerts pending or firing now."""
        alerts: list[dict[str, Any]] = self.api("alerts")["alerts"]
        return alerts

    def wait_for(self, what: str, probe: Any, timeout: float = 120.0, every: float = 1.0) -> Any:
        """Poll `probe()` until it returns something truthy; EngineError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            value = probe()
            if value:
                return value
            if time.monotonic() > deadline:
                raise EngineError(f"prometheus: no {what} after {timeout:.0f}s; log: {self.engine.log_path}")
            time.sleep(every)


def write_targets(workdir: Path, job: str, addresses: Iterable[str], labels: Mapping[str, str] | None = None) -> None:
    """Write the file-based targets of `job` for the Prometheus of `workdir` (see the module)."""
    entry = {"targets": list(addresses), "labels": {"service": job, **(labels or {})}}
    path = Path(workdir) / "targets" / f"{job}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([entry] if entry["targets"] else []))
    tmp.replace(path)  # atomic: Prometheus never reads half a file


def prometheus_server(
    workdir: Path,
    *,
    port: int | None = None,
    name: str = "prometheus",
    rule_files: Sequence[Path] = (),
    scrape_interval: str = "5s",
    evaluation_interval: str | None = None,
    retention: str = "2d",
    timeout: float = 60.0,
    detach: bool = False,
) -> PrometheusServer:
    """Write prometheus.yml (file-based targets, `rule_files`); the server is not started."""
    binary = require_binary(BIN / "prometheus", INSTALLER)
    workdir = Path(workdir).resolve()
    (workdir / "targets").mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    config = {
        "global": {
            "scrape_interval": scrape_interval,
            "scrape_timeout": scrape_interval if _seconds(scrape_interval) < 10 else "10s",
            "evaluation_interval": evaluation_interval or scrape_interval,
        },
        "rule_files": [str(Path(p).resolve()) for p in rule_files],
        "scrape_configs": [
            {
                "job_name": "exchange",
                "file_sd_configs": [{"files": [str(workdir / "targets" / "*.json")], "refresh_interval": "5s"}],
            },
            {"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]},
        ],
    }
    (workdir / "prometheus.yml").write_text(
        "# Written by exchange_devtools.engines.prometheus; rewritten on every start.\n"
        + yaml.safe_dump(config, sort_keys=False)
    )

    def ready() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1) as resp:
            return bool(resp.status == 200)

    engine = EngineProcess(
        name=name,
        argv=[
            str(binary),
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--storage.tsdb.retention.time={retention}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",  # POST /-/reload
            "--log.level=warn",
        ],
        workdir=workdir,
        ready=ready,
        timeout=timeout,
        detach=detach,
    )
    return PrometheusServer(engine=engine, port=port, workdir=workdir, rule_files=[Path(p) for p in rule_files])


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for suffix in ("ms", "s", "m", "h"):
        if duration.endswith(suffix):
            return float(duration[: -len(suffix)]) * units[suffix]
    raise ValueError(f"unsupported duration {duration!r}")


def start_prometheus(workdir: Path, **kwargs: Any) -> PrometheusServer:
    """Write the configuration and start; returns once `/-/ready` answers."""
    return prometheus_server(workdir, **kwargs).start()
