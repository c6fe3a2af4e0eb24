"""How fast this machine is right now, for benchmark headers.

The development machine is a shared VM whose speed drifts from day to day (the same Postgres
floor measured 10,300 requests/s one day and 4,000 two days later). A benchmark's figures are
comparable across runs only next to a fixed job timed in the same run: ratios against a
baseline in the run stay the primary measure, this puts absolute figures in context.
"""

from __future__ import annotations

import hashlib
import time


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
