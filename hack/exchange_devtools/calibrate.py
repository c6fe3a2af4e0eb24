"""How fast this machine is right now, for benchmark headers.

The development machine is a shared VM whose speed drifts from day to day (the same Postgres
floor measured 10,300 requests/s one day and 4,000 two days later). A benchmark's figures are
comparable across runs only next to a fixed job timed in the same run: ratios against a
baseline in the run stay the primary measure, this puts absolute figures in context.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path


def machine_speed(rounds: int = 3) -> str:
    """The best of `rounds` timings of a fixed pure-Python loop and of fixed SHA-256 work."""
    loop, digest = float("inf"), float("inf")
    block = b"x" * 300
    for _ in range(rounds):
        started = time.process_time()
        total = 0
        for i in range(1_000_000):
            total += i
        loop = min(loop, time.process_time() - started)
        started = time.process_time()
        for _ in range(100_000):
            hashlib.sha256(block).digest()
        digest = min(digest, time.process_time() - started)
    return f"machine speed: 1M-add Python loop {loop * 1000:.0f} ms, 100k SHA-256 of 300 B {digest * 1000:.0f} ms"


def io_pressure() -> float | None:
    """`some avg10` of /proc/pressure/io: the share (%) of the last 10 s in which some task waited
    on IO. None where the kernel does not report pressure."""
    try:
        with open("/proc/pressure/io") as f:
            first = f.readline().split()
    except OSError:
        return None
    return float(first[1].partition("=")[2])


def wait_for_quiet_io(threshold: float = 1.0, limit: float = 300.0) -> str:
    """Wait (at most `limit` s) until IO pressure is under `threshold` %. Deleting a previous
    run's data (~1 GB of small objects) keeps ext4 and the virtual disk busy for minutes, and
    s3proxy's CPU per PUT is highest in runs started right after (0.6-2.0 ms on one day)."""
    started = time.monotonic()
    pressure = io_pressure()
    while pressure is not None and pressure >= threshold and time.monotonic() - started < limit:
        time.sleep(5)
        pressure = io_pressure()
    if pressure is None:
        return "IO pressure not reported"
    return f"IO pressure {pressure:.1f} % at the start (waited {time.monotonic() - started:.0f} s)"


def _cpu_seconds(stat: str) -> float:
    """User + system CPU seconds from the text of a /proc/<pid>[/task/<tid>]/stat file."""
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) process `pid` has spent, all its threads together."""
    with open(f"/proc/{pid}/stat") as f:
        return _cpu_seconds(f.read())


def jit_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) the JVM `pid` has spent in its JIT compiler threads."""
    total = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        if "Compiler" in stat[stat.index("(") + 1 : stat.rindex(")")]:  # C1/C2 CompilerThreadN
            total += _cpu_seconds(stat)
    return total


def filesystem_of(path: str) -> str:
    """The type and options of the filesystem holding `path`, as /proc/mounts gives them."""
    real, best = os.path.realpath(path), ("", "unknown", "")
    with open("/proc/mounts") as mounts:
        for line in mounts:
            _, point, fstype, options, *_ = line.split()
            inside = real == point or real.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best[0]):
                best = (point, fstype, options)
    return f"{best[1]} ({best[2]})" if best[2] else best[1]
