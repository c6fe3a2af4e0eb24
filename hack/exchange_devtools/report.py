"""`python -m exchange_devtools engines-report`: start each local engine once and measure it.

For PostgreSQL, Kafka and the S3 server, one after the other in a temp dir on free ports: the
one-off setup (initdb / storage format / config), the time from spawn to the first real answer,
and the resident memory of the engine's whole process group after it has idled a few seconds.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from exchange_devtools.engines.base import EngineError, EngineProcess


@dataclass
class Measurement:
    engine: str
    version: str
    setup_s: float
    ready_s: float
    rss_mb: float
    pss_mb: float
    endpoint: str
    error: str = ""


def process_tree(root: int) -> list[int]:
    """`root` and all its live descendants (PostgreSQL children leave the process group)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # Field 4 (ppid) follows the parenthesised command, which may contain spaces.
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def _kib(path: Path, field: str) -> int:
    try:
        for line in path.read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def tree_memory_bytes(root: int) -> tuple[int, int]:
    """(sum of RSS, sum of PSS) over `root` and its descendants; PSS splits shared pages fairly."""
    rss = pss = 0
    for pid in process_tree(root):
        rss += _kib(Path(f"/proc/{pid}/status"), "VmRSS:")
        pss += _kib(Path(f"/proc/{pid}/smaps_rollup"), "Pss:")
    return rss * 1024, pss * 1024


class _Server(Protocol):
    """What the report needs from PostgresServer / KafkaServer / S3Server."""

    @property
    def engine(self) -> EngineProcess: ...

    def start(self) -> object: ...

    def stop(self) -> None: ...


def _postgres(workdir: Path) -> tuple[_Server, str, str]:
    from exchange_devtools.engines.postgres import postgres_bindir, postgres_server

    server = postgres_server(workdir, durable=False)
    version = subprocess.run(
        [str(postgres_bindir() / "postgres"), "--version"], capture_output=True, text=True, check=False
    ).stdout.split()[2:3]
    return server, (version or ["?"])[0], server.dsn


def _kafka(workdir: Path) -> tuple[_Server, str, str]:
    from exchange_devtools.engines.kafka import KAFKA_VERSION, kafka_server

    server = kafka_server(workdir)
    return server, KAFKA_VERSION, server.bootstrap_servers


def _s3(workdir: Path) -> tuple[_Server, str, str]:
    from exchange_devtools.engines.s3 import S3PROXY_VERSION, s3_server

    server = s3_server(workdir)
    return server, f"s3proxy {S3PROXY_VERSION}", server.endpoint_url


BUILDERS: dict[str, Callable[[Path], tuple[_Server, str, str]]] = {
    "postgres": _postgres,
    "kafka": _kafka,
    "s3": _s3,
}


def measure(name: str, workdir: Path, idle: float) -> Measurement:
    started = time.monotonic()
    try:
        server, version, endpoint = BUILDERS[name](workdir)
    except EngineError as exc:
        return Measurement(name, "-", 0.0, 0.0, 0.0, 0.0, "-", error=str(exc))
    setup = time.monotonic() - started
    try:
        server.start()
        ready = server.engine.ready_seconds
        time.sleep(idle)
        rss, pss = tree_memory_bytes(server.engine.pid)
    except EngineError as exc:
        return Measurement(name, version, setup, 0.0, 0.0, 0.0, endpoint, error=str(exc))
    finally:
        server.stop()
    return Measurement(name, version, setup, ready, rss / 2**20, pss / 2**20, endpoint)


def render(rows: list[Measurement], idle: float) -> str:
    header = (
        "engine",
        "version",
        "setup (s)",
        "ready (s)",
        f"idle RSS after {idle:g}s (MB)",
        "idle PSS (MB)",
        "endpoint",
    )
    table = [header] + [
        (
            m.engine,
            m.version,
            f"{m.setup_s:.2f}",
            f"{m.ready_s:.2f}" if not m.error else "FAILED",
            f"{m.rss_mb:.0f}" if not m.error else "-",
            f"{m.pss_mb:.0f}" if not m.error else "-",
            m.endpoint,
        )
        for m in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines += [f"{m.engine}: {m.error}" for m in rows if m.error]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m exchange_devtools engines-report", description=__doc__)
    parser.add_argument(
        "engines", nargs="*", metavar="ENGINE", help=f"engines to measure: {', '.join(BUILDERS)} (default: all)"
    )
    parser.add_argument("--idle", type=float, default=5.0, help="seconds to idle before reading RSS")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, data)")
    args = parser.parse_args(argv)
    names: list[str] = list(args.engines) or list(BUILDERS)
    unknown = sorted(set(names) - set(BUILDERS))
    if unknown:
        parser.error(f"unknown engine(s): {', '.join(unknown)}; choose from {', '.join(BUILDERS)}")

    base = Path(tempfile.mkdtemp(prefix="exchange-engines-report-"))
    rows = []
    for name in names:
        print(f"starting {name} ...", flush=True)
        rows.append(measure(name, base / name, args.idle))
    print()
    print(render(rows, args.idle))
    print("\nsetup = initdb / storage format / config before the first start (not counted in ready);")
    print("ready = spawn to the first real answer (pg_isready, Kafka Metadata, S3 HTTP);")
    print("RSS/PSS = summed over the engine process and its children (PSS shares shared pages fairly).")
    if args.keep:
        print(f"logs and data kept in {base}")
    else:
        shutil.rmtree(base, ignore_errors=True)
    return 1 if any(m.error for m in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
