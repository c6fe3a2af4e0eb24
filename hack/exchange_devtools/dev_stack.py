"""`make dev` / `make down`: the engines and every service that exists, as local processes, and a
Prometheus on 127.0.0.1:9090 that scrapes every service (file-based targets) with the chart's rules.

State, logs and pid files live in `.dev/` of the repo (`EXCHANGE_DEV_DIR` moves it). `up` is safe
to run again at any time: an engine or service that runs and answers on its port is kept (an
engine's connection details are in `.dev/<name>/env.json`), one that died (kill -9, crash) is
started again on the port recorded in `.dev/ports.json`, so whatever still runs keeps valid
addresses; a service whose environment changed is restarted. A recorded port that another process
holds is a one-line error naming that process.
Services get their configuration from `.dev/env`, which this writes as shell exports, except their
database login: each process connects as its own Postgres role, as on a cluster
(`exchange_devtools.dev_roles`); `.dev/env` carries the owner role's, which `exchange migrate` uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exchange_devtools import dev_roles
from exchange_devtools.engines.base import (
    REPO_ROOT,
    EngineError,
    EngineProcess,
    free_port,
    pid_alive,
    port_bindable,
    port_listener,
    port_open,
    run,
    stop_pid,
)

STATE = Path(os.environ.get("EXCHANGE_DEV_DIR", REPO_ROOT / ".dev"))
PORT_BASE_VAR = "EXCHANGE_DEV_PORT_BASE"
RAW_BUCKET = "exchange-raw"

PORTS: dict[str, int | None] = {
    "ingest": 8080,
    "query": 8081,
    "tokenizer": 8082,
    "relay-metrics": 9103,
    "normalizer-metrics": 9102,
    "prometheus": 9090,
    "kafka-metrics": 9308,  # the broker's JMX exporter agent
    "jaeger-health": 13133,
    "jaeger-otlp": 4318,
    "jaeger-query": 16686,
    "jaeger-query-grpc": 16685,
    "postgres": None,
    "kafka": None,
    "kafka-controller": None,
    "s3": None,
    "postgres-exporter": 9187,
}
"""Every port of the stack and its usual number (None: a free one). With EXCHANGE_DEV_PORT_BASE=B
the n-th gets B+n instead (tests, a second stack). The first `up` records them in
`.dev/ports.json`; every later `up` restarts what died on the recorded ports."""

KAFKA_RESTART_PROPERTIES = {"broker.heartbeat.interval.ms": "1000", "broker.session.timeout.ms": "3000"}
"""A broker started again after kill -9 is refused (DUPLICATE_BROKER_REGISTRATION) until its old
session times out: 3 s instead of the default 9."""


@dataclass(frozen=True)
class Service:
    module: str
    """The module that must exist for the service to be started."""
    argv: list[str]
    """After `exchange`."""
    port: str
    """Its name in PORTS: the API port of an HTTP service, a worker's probes and /metrics."""

    @property
    def http(self) -> bool:
        return not self.port.endswith("-metrics")


SERVICES: dict[str, Service] = {
    "ingest": Service("exchange.ingest.app", ["serve", "ingest"], "ingest"),
    "query": Service("exchange.query.app", ["serve", "query"], "query"),
    "tokenizer": Service("exchange.tokenizer.app", ["serve", "tokenizer"], "tokenizer"),
    "relay": Service("exchange.ingest.relay", ["serve", "relay"], "relay-metrics"),
    "normalizer": Service("exchange.normalizer.worker", ["serve", "normalizer"], "normalizer-metrics"),
}


def port_plan() -> dict[str, int]:
    """The stack's ports: those recorded in `.dev/ports.json`, the missing ones added and recorded."""
    path = STATE / "ports.json"
    try:
        plan: dict[str, int] = json.loads(path.read_text()) if path.exists() else {}
        if not all(isinstance(port, int) for port in plan.values()):
            raise ValueError
    except (OSError, ValueError, AttributeError) as exc:
        raise EngineError(f"{path}: not a JSON object of port numbers; fix or delete it") from exc
    base_text = os.environ.get(PORT_BASE_VAR, "").strip()
    if base_text and not (base_text.isdigit() and 1024 <= int(base_text) <= 65535 - len(PORTS)):
        raise EngineError(f"{PORT_BASE_VAR}={base_text!r}: expected a port from 1024 to {65535 - len(PORTS)}")
    earlier = _engine_ports_before_the_plan()
    for offset, (name, usual) in enumerate(PORTS.items()):
        if name not in plan:
            if base_text:
                plan[name] = int(base_text) + offset
            else:
                plan[name] = earlier.get(name) or usual or _free_port_outside(plan)
    path.write_text(json.dumps(plan, indent=2) + "\n")
    return plan


def _engine_ports_before_the_plan() -> dict[str, int]:
    """The ports a `.dev` from before ports.json gave its engines (each engine kept its own)."""
    found: dict[str, int] = {}
    for name in ("postgres", "s3"):
        with contextlib.suppress(OSError, ValueError):
            found[name] = int((STATE / name / "port").read_text().strip())
    with contextlib.suppress(OSError):
        props = dict(
            line.split("=", 1)
            for line in (STATE / "kafka" / "server.properties").read_text().splitlines()
            if "=" in line
        )
        with contextlib.suppress(KeyError, ValueError):
            found["kafka"] = int(props["advertised.listeners"].rsplit(":", 1)[1])
            found["kafka-controller"] = int(props["controller.quorum.voters"].rsplit(":", 1)[1])
    return found


def _free_port_outside(plan: dict[str, int]) -> int:
    while (port := free_port()) in plan.values():
        pass
    return port


def _running(pid_file: Path, port: int) -> bool:
    """The process of `pid_file` runs and something answers on its port."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return False
    return pid_alive(pid) and port_open(port)


def _stop_leftover(pid_file: Path) -> None:
    """Stop what is left of a process that no longer answers (hung, or half started)."""
    with contextlib.suppress(OSError, ValueError):
        pid = int(pid_file.read_text().strip())
        if pid_alive(pid) and os.getpgid(pid) == pid:  # a group of ours, not a recycled pid
            stop_pid(pid, timeout=30)
    with contextlib.suppress(FileNotFoundError):
        pid_file.unlink()


def _claim(ports: dict[str, int]) -> None:
    """One-line EngineError when a port we are about to listen on is taken by someone else."""
    for label, port in ports.items():
        holder = port_listener(port)
        if holder is None and not port_bindable(port):
            holder = "another process"
        if holder is not None:
            raise EngineError(f"port {port} ({label}) is held by {holder}; stop it or run make down")


def _engine(
    name: str, ports: list[str], plan: dict[str, int], build: Callable[[Path], Any]
) -> tuple[dict[str, str], bool]:
    """Start an engine unless it runs and answers on its first port; its env exports, and
    whether it was (re)started."""
    workdir = STATE / name
    env_file = workdir / "env.json"
    pid_file = workdir / f"{name}.pid"
    if _running(pid_file, plan[ports[0]]) and env_file.exists():
        print(f"  {name:<17} already running  :{plan[ports[0]]}")
        env: dict[str, str] = json.loads(env_file.read_text())
        return env, False
    _stop_leftover(pid_file)
    _claim({port: plan[port] for port in ports})
    started = time.monotonic()
    server = build(workdir)
    server.start()
    env = server.env()
    env_file.write_text(json.dumps(env))
    print(
        f"  {name:<17} ready in {time.monotonic() - started:4.1f}s  :{plan[ports[0]]}  (log: {server.engine.log_path})"
    )
    return env, True


def _start_engines(plan: dict[str, int]) -> tuple[dict[str, str], list[str]]:
    """Every engine running; the env they export and the names of those (re)started now."""
    from exchange_devtools.engines.jaeger import JaegerServer
    from exchange_devtools.engines.kafka import kafka_server
    from exchange_devtools.engines.postgres import postgres_server
    from exchange_devtools.engines.postgres_exporter import PostgresExporter
    from exchange_devtools.engines.prometheus import prometheus_server
    from exchange_devtools.engines.s3 import s3_server
    from exchange_devtools.monitoring import RULES_FILE

    engines: dict[str, tuple[list[str], Callable[[Path], Any]]] = {
        "postgres": (["postgres"], lambda d: postgres_server(d, port=plan["postgres"], detach=True)),
        "postgres-exporter": (
            ["postgres-exporter"],
            lambda d: PostgresExporter(d, env["DATABASE_URL"], port=plan["postgres-exporter"], detach=True),
        ),
        "kafka": (
            ["kafka", "kafka-controller", "kafka-metrics"],
            lambda d: kafka_server(d, port=plan["kafka"], controller_port=plan["kafka-controller"], detach=True,
                                   partitions=3, metrics_port=plan["kafka-metrics"],
                                   extra_properties=KAFKA_RESTART_PROPERTIES),
        ),
        "s3": (["s3"], lambda d: s3_server(d, port=plan["s3"], detach=True, long_running=True)),
        # Its env points every service's exporter at it (tracing on, every trace kept) and exports JAEGER_URL.
        "jaeger": (
            ["jaeger-health", "jaeger-otlp", "jaeger-query", "jaeger-query-grpc"],
            lambda d: JaegerServer(d, otlp_port=plan["jaeger-otlp"], query_port=plan["jaeger-query"],
                                   query_grpc_port=plan["jaeger-query-grpc"], health_port=plan["jaeger-health"],
                                   detach=True),
        ),
        "prometheus": (
            ["prometheus"],
            lambda d: prometheus_server(d, port=plan["prometheus"], rule_files=[RULES_FILE], detach=True),
        ),
    }  # fmt: skip
    env: dict[str, str] = {}
    restarted = []
    for name, (ports, build) in engines.items():
        exports, started = _engine(name, ports, plan, build)
        env |= exports
        if started:
            restarted.append(name)
    return env, restarted


def _scrape_targets(started: list[str], plan: dict[str, int]) -> None:
    """Point Prometheus at every service that runs (file-based discovery: no restart)."""
    from exchange_devtools.engines.prometheus import write_targets

    for name, service in SERVICES.items():
        address = f"127.0.0.1:{plan[service.port]}"
        write_targets(STATE / "prometheus", name, [address] if name in started else [], {"pipeline": "dev"})
    write_targets(STATE / "prometheus", "kafka", [f"127.0.0.1:{plan['kafka-metrics']}"], {"pipeline": "dev"})
    write_targets(STATE / "prometheus", "postgres", [f"127.0.0.1:{plan['postgres-exporter']}"], {"pipeline": "dev"})


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


def _fingerprint(env: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(env, sort_keys=True).encode()).hexdigest()


def _service_state(name: str, port: int, env: dict[str, str]) -> str:
    """Whether the service is "running" (answering, started with this env), "changed" (answering,
    started with another env) or "dead"."""
    workdir = STATE / "services"
    if not _running(workdir / f"{name}.pid", port):
        return "dead"
    with contextlib.suppress(OSError):
        if (workdir / f"{name}.env.sha256").read_text().strip() == _fingerprint(env):
            return "running"
    return "changed"


def _start_service(name: str, service: Service, port: int, env: dict[str, str]) -> str:
    workdir = STATE / "services"
    pid_file = workdir / f"{name}.pid"
    url = f"http://127.0.0.1:{port}" if service.http else f"worker, probes on :{port}"
    state = _service_state(name, port, env)
    if state == "running":
        return f"  {name:<17} already running  {url}"
    _stop_leftover(pid_file)
    _claim({service.port: port})

    def ready() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
            return bool(resp.status == 200)

    proc = EngineProcess(
        name=name, argv=[_exchange_bin(), *service.argv], workdir=workdir, ready=ready, env=env, timeout=60, detach=True
    )
    proc.start()
    (workdir / f"{name}.env.sha256").write_text(_fingerprint(env) + "\n")
    why = "  restarted: its settings changed" if state == "changed" else ""
    return f"  {name:<17} {url}  (log: {proc.log_path}){why}"


def _exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def up(argv: list[str]) -> int:
    STATE.mkdir(parents=True, exist_ok=True)
    plan = port_plan()
    print("engines:")
    env, restarted = _start_engines(plan)
    admin_dsn = env["DATABASE_URL"]  # the local cluster's superuser
    role_passwords = dev_roles.passwords(STATE)
    role_dsns = dev_roles.dsns(admin_dsn, role_passwords)
    env |= {
        "DATABASE_URL": role_dsns["migrate"],  # the owner: `exchange migrate` runs as it, as the operator's Job
        "ENV": "local",
        "LOG_JSON": "true",
        "S3_BUCKET_RAW": RAW_BUCKET,
        "TOKENIZATION_SECRET_FILE": str(_secret_file()),
        "TOKENIZER_URL": f"http://127.0.0.1:{plan['tokenizer']}",
        "INGEST_URL": f"http://127.0.0.1:{plan['ingest']}",
        "QUERY_URL": f"http://127.0.0.1:{plan['query']}",
        # `exchange migrate` owns the schema; the services' roles may not create it (as the operator sets).
        "INGEST_MIGRATE_ON_START": "false",
        "NORMALIZER_MIGRATE_ON_START": "false",
        "RELAY_METRICS_PORT": str(plan["relay-metrics"]),
        "NORMALIZER_METRICS_PORT": str(plan["normalizer-metrics"]),
    }
    env_file = _write_env(env)
    built = {name: service for name, service in SERVICES.items() if _exists(service.module)}
    envs = {
        name: {**service_env(name, env, role_dsns), "HOST": "127.0.0.1", "PORT": str(plan[service.port])}
        for name, service in built.items()
        if service.http
    } | {name: service_env(name, env, role_dsns) for name, service in built.items() if not service.http}
    states = {name: _service_state(name, plan[service.port], envs[name]) for name, service in built.items()}
    if not restarted and all(state == "running" for state in states.values()):
        print(f"services:    {', '.join(built)} already running")
        print("nothing to do: every engine and service runs and answers on its recorded port")
        return 0
    for name, state in states.items():
        if state == "dead":  # its port must be free before anything else is done
            _stop_leftover(STATE / "services" / f"{name}.pid")
            _claim({built[name].port: plan[built[name].port]})
    # Something (re)starts: provisioning, bootstrap and migrate are idempotent and cheap next to it.
    asyncio.run(dev_roles.provision(admin_dsn, role_passwords))
    child_env = {**os.environ, **env}
    with ThreadPoolExecutor() as pool:  # topics and bucket, schema: independent of each other
        for setup in [pool.submit(run, [_exchange_bin(), cmd], what=f"exchange {cmd}", env=child_env)
                      for cmd in ("bootstrap", "migrate")]:  # fmt: skip
            setup.result()
    print("services:")
    with ThreadPoolExecutor() as pool:  # they start side by side: none needs another to start
        lines = {name: pool.submit(_start_service, name, service, plan[service.port], envs[name])
                 for name, service in built.items()}  # fmt: skip
    for name, service in SERVICES.items():
        print(lines[name].result() if name in lines else f"  {name:<17} not built yet (no {service.module})")
    _scrape_targets(list(built), plan)
    print(f"metrics:     {env['PROMETHEUS_URL']} scrapes {', '.join(built)}")
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
