"""`make dev` / `make down`: the engines and every service that exists, as local processes, and a
Prometheus on 127.0.0.1:9090 that scrapes every service (file-based targets) with the chart's rules.

State, logs and pid files live in `.dev/` of the repo. `up` is safe to run twice: a running
engine or service is reused (its connection details are kept in `.dev/<name>/env.json`).
Services get their configuration from `.dev/env`, which this writes as shell exports, except their
database login: each process connects as its own Postgres role, as on a cluster
(`exchange_devtools.dev_roles`); `.dev/env` carries the owner role's, which `exchange migrate` uses.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import shlex
import signal
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from exchange_devtools import dev_roles
from exchange_devtools.engines.base import REPO_ROOT, EngineError, EngineProcess, port_open, run, stop_pid

STATE = Path(os.environ.get("EXCHANGE_DEV_DIR", REPO_ROOT / ".dev"))
RAW_BUCKET = "exchange-raw"
PROMETHEUS_PORT = 9090
METRICS_PORTS = {"relay": 9103, "normalizer": 9102}
"""Workers serve /metrics (and their probes) on a port of their own; the HTTP services, with
ENV=local, on their API port."""
KAFKA_METRICS_PORT = 9308
"""The broker's JMX exporter agent."""
POSTGRES_EXPORTER_PORT = 9187
"""postgres_exporter's usual port."""

# name → (module that must exist, argv after `exchange`, HTTP port or None for workers)
SERVICES: dict[str, tuple[str, list[str], int | None]] = {
    "ingest": ("exchange.ingest.app", ["serve", "ingest"], 8080),
    "query": ("exchange.query.app", ["serve", "query"], 8081),
    "tokenizer": ("exchange.tokenizer.app", ["serve", "tokenizer"], 8082),
    "relay": ("exchange.ingest.relay", ["serve", "relay"], None),
    "normalizer": ("exchange.normalizer.worker", ["serve", "normalizer"], None),
}


def _alive(pid_file: Path) -> bool:
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return False
    return True


def _engine(name: str, build: Callable[[Path], Any]) -> dict[str, str]:
    """Start an engine unless its pid file shows it running; return its env exports."""
    workdir = STATE / name
    env_file = workdir / "env.json"
    if _alive(workdir / f"{name}.pid") and env_file.exists():
        print(f"  {name:<10} already running")
        env: dict[str, str] = json.loads(env_file.read_text())
        return env
    started = time.monotonic()
    server = build(workdir)
    server.start()
    env = server.env()
    env_file.write_text(json.dumps(env))
    print(f"  {name:<10} ready in {time.monotonic() - started:4.1f}s  (log: {server.engine.log_path})")
    return env


def _start_engines() -> dict[str, str]:
    from exchange_devtools.engines.jaeger import JaegerServer
    from exchange_devtools.engines.kafka import kafka_server
    from exchange_devtools.engines.postgres import postgres_server
    from exchange_devtools.engines.postgres_exporter import PostgresExporter
    from exchange_devtools.engines.prometheus import prometheus_server
    from exchange_devtools.engines.s3 import s3_server
    from exchange_devtools.monitoring import RULES_FILE

    env: dict[str, str] = {}
    env |= _engine("postgres", lambda d: postgres_server(d, detach=True))
    admin_dsn = env["DATABASE_URL"]
    _engine("postgres-exporter", lambda d: PostgresExporter(d, admin_dsn, port=POSTGRES_EXPORTER_PORT, detach=True))
    env |= _engine("kafka", lambda d: kafka_server(d, detach=True, partitions=3, metrics_port=KAFKA_METRICS_PORT))
    env |= _engine("s3", lambda d: s3_server(d, detach=True, long_running=True))
    # Jaeger's usual ports: the UI and query API on :16686, OTLP/HTTP in on :4318. Its env points
    # every service's exporter at it (tracing on, every trace kept) and exports JAEGER_URL.
    env |= _engine("jaeger", lambda d: JaegerServer(d, otlp_port=4318, query_port=16686, query_grpc_port=16685,
                                                    health_port=13133, detach=True))  # fmt: skip
    env |= _engine("prometheus", lambda d: _prometheus(d, prometheus_server, RULES_FILE))
    return env


def _prometheus(workdir: Path, build: Callable[..., Any], rules: Path) -> Any:
    if port_open(PROMETHEUS_PORT):
        raise EngineError(f"prometheus: port {PROMETHEUS_PORT} is already in use by another process; free it and rerun")
    return build(workdir, port=PROMETHEUS_PORT, rule_files=[rules], detach=True)


def _scrape_targets(started: list[str]) -> None:
    """Point Prometheus at every service that runs (file-based discovery: no restart)."""
    from exchange_devtools.engines.prometheus import write_targets

    for name, (_, _, port) in SERVICES.items():
        address = f"127.0.0.1:{port or METRICS_PORTS[name]}"
        write_targets(STATE / "prometheus", name, [address] if name in started else [], {"pipeline": "dev"})
    write_targets(STATE / "prometheus", "kafka", [f"127.0.0.1:{KAFKA_METRICS_PORT}"], {"pipeline": "dev"})
    write_targets(STATE / "prometheus", "postgres", [f"127.0.0.1:{POSTGRES_EXPORTER_PORT}"], {"pipeline": "dev"})


def _database_roles(env: dict[str, str]) -> dict[str, str]:
    """Provision the per-process roles on the local cluster (as its superuser); their DSNs."""
    import asyncio

    admin_dsn = env["DATABASE_URL"]
    role_passwords = dev_roles.passwords(STATE)
    asyncio.run(dev_roles.provision(admin_dsn, role_passwords))
    return dev_roles.dsns(admin_dsn, role_passwords)


def service_env(name: str, env: dict[str, str], role_dsns: dict[str, str]) -> dict[str, str]:
    """The environment of service `name`: the shared one with its own role's DATABASE_URL (none
    for a process that does not reach Postgres)."""
    own = {k: v for k, v in env.items() if k != "DATABASE_URL"}
    if name in role_dsns:
        own["DATABASE_URL"] = role_dsns[name]
    return own


def _secret_file() -> Path:
    path = STATE / "tokenization.secret"
    if not path.exists():
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path


def _write_env(env: dict[str, str]) -> Path:
    path = STATE / "env"
    lines = [f"export {key}={shlex.quote(value)}" for key, value in sorted(env.items())]
    path.write_text(
        "# Written by `make dev`; `source .dev/env` to talk to the local stack.\n" + "\n".join(lines) + "\n"
    )
    return path


def _exchange_bin() -> str:
    return str(Path(sys.executable).with_name("exchange"))


def _start_service(name: str, argv: list[str], port: int | None, env: dict[str, str]) -> str:
    workdir = STATE / "services"
    pid_file = workdir / f"{name}.pid"
    url = f"http://127.0.0.1:{port}" if port else "worker"
    if _alive(pid_file):
        return f"  {name:<10} already running  {url}"
    if port is not None and port_open(port):
        raise EngineError(f"{name}: port {port} is already in use by another process; free it and rerun")

    def ready() -> bool:
        if port is None:
            return True
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
            return bool(resp.status == 200)

    proc = EngineProcess(
        name=name,
        argv=[_exchange_bin(), *argv],
        workdir=workdir,
        ready=ready,
        env={**env, "HOST": "127.0.0.1", **({"PORT": str(port)} if port else {})},
        timeout=60,
        detach=True,
    )
    proc.start()
    if port is None:
        time.sleep(1.5)  # a worker that crashes on start does so at once
        if proc.proc is not None and proc.proc.poll() is not None:
            raise EngineError(f"{name} exited at start; log: {proc.log_path}")
    return f"  {name:<10} {url}  (log: {proc.log_path})"


def _exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def up(argv: list[str]) -> int:
    STATE.mkdir(parents=True, exist_ok=True)
    print("engines:")
    env = _start_engines()
    role_dsns = _database_roles(env)
    env |= {
        "DATABASE_URL": role_dsns["migrate"],  # the owner: `exchange migrate` runs as it, as the operator's Job
        "ENV": "local",
        "LOG_JSON": "true",
        "S3_BUCKET_RAW": RAW_BUCKET,
        "TOKENIZATION_SECRET_FILE": str(_secret_file()),
        "TOKENIZER_URL": "http://127.0.0.1:8082",
        "INGEST_URL": "http://127.0.0.1:8080",
        "QUERY_URL": "http://127.0.0.1:8081",
        # `exchange migrate` owns the schema; the services' roles may not create it (as the operator sets).
        "INGEST_MIGRATE_ON_START": "false",
        "NORMALIZER_MIGRATE_ON_START": "false",
        "RELAY_METRICS_PORT": str(METRICS_PORTS["relay"]),
        "NORMALIZER_METRICS_PORT": str(METRICS_PORTS["normalizer"]),
    }
    env_file = _write_env(env)
    child_env = {**os.environ, **env}
    run([_exchange_bin(), "bootstrap"], what="exchange bootstrap", env=child_env)
    run([_exchange_bin(), "migrate"], what="exchange migrate", env=child_env)
    print("services:")
    started = []
    for name, (module, args, port) in SERVICES.items():
        if not _exists(module):
            print(f"  {name:<10} not built yet (no {module})")
            continue
        print(_start_service(name, args, port, service_env(name, env, role_dsns)))
        started.append(name)
    _scrape_targets(started)
    print(f"metrics:     {env['PROMETHEUS_URL']} scrapes {', '.join(started)}")
    shown = env_file.relative_to(REPO_ROOT) if env_file.is_relative_to(REPO_ROOT) else env_file
    print(f"\nenvironment: source {shown}")
    print("stop with:   make down")
    return 0


def down(argv: list[str]) -> int:
    if not STATE.exists():
        print("nothing to stop")
        return 0
    stopped = []
    # Services first, then engines, so nothing logs connection errors on the way down.
    pid_files = sorted((STATE / "services").glob("*.pid")) + [
        p for p in STATE.glob("*/*.pid") if p.parent.name != "services" and p.parent.name != "kube"
    ]
    for pid_file in pid_files:
        with contextlib.suppress(ValueError, FileNotFoundError):
            pid = int(pid_file.read_text().strip())
            interrupted = False
            if pid_file.stem == "postgres":
                # SIGINT is Postgres' fast shutdown; its children leave the process group,
                # so the postmaster must take them down before the group is signalled.
                interrupted = stop_pid(pid, timeout=20, sig=signal.SIGINT, group=False)
            if stop_pid(pid, timeout=30) or interrupted:
                stopped.append(pid_file.stem)
            pid_file.unlink()
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0
