"""The end-to-end bulk benchmark (run through `hack/bench/e2e`; see there)."""

from __future__ import annotations

# ruff: noqa: ASYNC109, ASYNC110  (a benchmark polls, with its own deadlines, on purpose)
import argparse
import asyncio
import contextlib
import os
import random
import re
import resource
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from exchange_devtools.engines.base import free_port
from exchange_devtools.testdata import SYNTHEA_DIR as SYNTHEA

ROOT = Path(__file__).resolve().parents[2]
EXCHANGE = ROOT / ".venv" / "bin" / "exchange"
TOPIC, GROUP = "record.ingested.v1", "normalizer"
UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
GIVEN = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim", "Mary", "John"]
FAMILY = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Perlman", "Ritchie"]
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
SAMPLE_EVERY = 0.5
SAMPLING = {
    "1%": {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"},
    "100%": {"OTEL_TRACES_SAMPLER": "parentbased_always_on"},
}
"""The services' trace sampling (inherited through `make dev`'s environment)."""
COUNTS = (
    "query($since: DateTime!, $until: DateTime!) { recordCounts(bucket: DAY, since: $since, until: $until) { count } }"
)


# ---- the data: the shared Synthea sample cloned with fresh ids and fake people
def generate(path: Path, records: int, seed: int) -> None:
    """`records` FHIR resources in `path`: copies of the sample (its type mix, shuffled once) in
    which every resource id (and each reference to it) is fresh and every Patient is a new person."""
    rng = random.Random(seed)
    lines = [line for p in sorted(SYNTHEA.glob("*.ndjson")) for line in p.read_bytes().splitlines() if line.strip()]
    random.Random(0).shuffle(lines)  # any prefix of a copy keeps the sample's type proportions
    ids = [orjson.loads(line)["id"].encode() for line in lines]
    written = 0
    with path.open("wb") as out:
        while written < records:
            fresh = {old: _uuid(rng) for old in ids}

            def renamed(match: re.Match[bytes], fresh: dict[bytes, bytes] = fresh) -> bytes:
                return fresh.get(match.group(), match.group())

            for line in lines[: records - written]:
                line = UUID.sub(renamed, line)
                if line.startswith(b'{"resourceType":"Patient"'):
                    line = _new_person(orjson.loads(line), rng)
                out.write(line + b"\n")
            written += min(len(lines), records - written)


def _uuid(rng: random.Random) -> bytes:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}".encode()


def _new_person(patient: dict[str, Any], rng: random.Random) -> bytes:
    given, family = rng.choice(GIVEN), f"{rng.choice(FAMILY)}{rng.randint(1, 999)}"
    patient["name"] = [{"use": "official", "family": family, "given": [given]}]
    patient["birthDate"] = f"{rng.randint(1930, 2020)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    patient["gender"] = rng.choice(["female", "male"])
    for address in patient.get("address", []):
        address["postalCode"] = f"{rng.randint(10000, 99999)}"
    for ident in patient.get("identifier", []):
        if ident.get("system") == "http://hl7.org/fhir/sid/us-ssn":
            ident["value"] = f"{rng.randint(100, 665)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}"
    return orjson.dumps(patient)


# ---- the stack
@dataclass
class Stack:
    state: Path
    env: dict[str, str]
    log: Any
    extra: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def dev(self, command: str) -> None:
        subprocess.run([sys.executable, "-m", "exchange_devtools", command], env=self.env, check=True,
                       stdout=self.log, stderr=self.log)  # fmt: skip

    def exports(self) -> dict[str, str]:
        out = {}
        for line in (self.state / "env").read_text().splitlines():
            if line.startswith("export "):
                key, _, value = shlex.split(line[len("export ") :])[0].partition("=")
                out[key] = value
        return out

    def pids(self) -> dict[str, int]:
        """Every process of the stack by name (an engine or service), and the extra normalizers."""
        found = {}
        for pid_file in self.state.glob("*/*.pid"):
            with contextlib.suppress(OSError, ValueError):
                found[pid_file.stem] = int(pid_file.read_text().strip())
        for n, proc in enumerate(self.extra, start=2):
            found[f"normalizer-{n}"] = proc.pid
        return found

    def normalizer_env(self) -> dict[str, str]:
        environ = Path(f"/proc/{self.pids()['normalizer']}/environ").read_bytes().split(b"\0")
        return dict(e.decode().split("=", 1) for e in environ if b"=" in e)

    def stop_normalizer(self) -> None:
        _stop(self.pids()["normalizer"], signal.SIGTERM)

    def add_normalizer(self, env: dict[str, str], argv: list[str] | None = None) -> subprocess.Popen[bytes]:
        """One more normalizer in the group with `env` (its own probe port), ready."""
        port = free_port()
        argv = [*(argv or []), str(EXCHANGE), "serve", "normalizer"]
        proc = subprocess.Popen(argv, env={**env, "NORMALIZER_METRICS_PORT": str(port)}, stdout=self.log,
                                stderr=self.log, start_new_session=True)  # fmt: skip
        self.extra.append(proc)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    return proc
            time.sleep(0.2)
        raise RuntimeError("the added normalizer did not get ready")


def _stop(pid: int, sig: signal.Signals) -> None:
    os.killpg(pid, sig)
    while Path(f"/proc/{pid}").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z":
        time.sleep(0.1)


# ---- measuring
def proc_snapshot() -> dict[int, tuple[int, float, int]]:
    """pid -> (parent, CPU seconds incl. reaped children, resident bytes not shared)."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            resident, shared = (int(x) for x in Path(f"/proc/{entry}/statm").read_text().split()[1:3])
            cpu = sum(int(x) for x in fields[11:15]) / TICK
            out[int(entry)] = (int(fields[1]), cpu, (resident - shared) * PAGE)
    return out


def by_group(snapshot: dict[int, tuple[int, float, int]], roots: dict[str, int]) -> dict[str, tuple[float, int]]:
    """name -> (CPU seconds, private resident bytes) of the process tree under each root."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _, _) in snapshot.items():
        children.setdefault(parent, []).append(pid)
    out = {}
    for name, root in roots.items():
        cpu, rss, todo = 0.0, 0, [root]
        while todo:
            pid = todo.pop()
            if pid in snapshot:
                cpu += snapshot[pid][1]
                rss += snapshot[pid][2]
                todo += children.get(pid, [])
        out[name] = (cpu, rss)
    return out


@dataclass
class Phase:
    name: str
    records: int
    upload: float = 0.0
    done: float = 0.0
    uploader_cpu: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    rss: dict[str, int] = field(default_factory=dict)
    series: list[tuple[float, int, int]] = field(default_factory=list)  # (t, consumer lag, not yet queryable)

    @property
    def rate(self) -> float:
        return self.records / self.done

    @property
    def lag_zero(self) -> float:
        return self.done - self.upload


class Probe:
    """Kafka consumer lag of the normalizer group and the count the query service returns."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.consumer = AIOKafkaConsumer(bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"], group_id=GROUP)
        self.http = httpx.AsyncClient(base_url=env["QUERY_URL"], headers={"Authorization": "Bearer dev"}, timeout=30)
        self.partitions: list[TopicPartition] = []

    async def start(self) -> None:
        await self.consumer.start()

    async def close(self) -> None:
        await self.consumer.stop()
        await self.http.aclose()

    async def offsets(self) -> tuple[int, int]:
        """(records in the topic, records the normalizer group has committed)."""
        if not self.partitions:  # the topic may appear with the first event
            # Asked of the broker: a consumer subscribed to nothing knows no topic's partitions.
            admin = AIOKafkaAdminClient(bootstrap_servers=self.env["KAFKA_BOOTSTRAP_SERVERS"])
            await admin.start()
            try:
                (topic,) = await admin.describe_topics([TOPIC])
            finally:
                await admin.close()
            found = sorted(p["partition"] for p in topic["partitions"])
            self.partitions = [TopicPartition(TOPIC, p) for p in found]
        ends = await self.consumer.end_offsets(self.partitions)
        committed = [await self.consumer.committed(tp) or 0 for tp in self.partitions]
        return sum(ends.values()), sum(committed)

    async def queryable(self, since: datetime) -> int:
        until = since + timedelta(days=2)
        resp = await self.http.post("/graphql", json={"query": COUNTS, "variables": {
            "since": since.isoformat(), "until": until.isoformat()}})  # fmt: skip
        body = resp.json()
        if "errors" in body:
            raise RuntimeError(f"query service: {body['errors'][0].get('message')}")
        return sum(b["count"] for b in body["data"]["recordCounts"])


def upload(path: Path, env: dict[str, str], log: Any) -> float:
    """`exchange ingest bulk --gzip` (default chunking); the uploader's CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([str(EXCHANGE), "ingest", "bulk", str(path), "--gzip", "--url", env["INGEST_URL"]],
                   env={**os.environ, "EXCHANGE_TOKEN": "dev"}, check=True, stdout=log, stderr=log)  # fmt: skip
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


async def end_to_end(name: str, path: Path, records: int, stack: Stack, probe: Probe, timeout: float) -> Phase:
    """Upload `path` and wait until the query service counts every record: timings, the lag series,
    CPU and peak private memory per process over the phase."""
    phase = Phase(name, records)
    since = datetime.now(UTC) - timedelta(seconds=1)
    roots = stack.pids()
    first = by_group(proc_snapshot(), roots)
    start = time.monotonic()
    task = asyncio.create_task(asyncio.to_thread(upload, path, stack.env, stack.log))
    queryable = 0
    while queryable < records:
        await asyncio.sleep(SAMPLE_EVERY)
        now = time.monotonic() - start
        if now > timeout:
            raise RuntimeError(f"{name}: {queryable} of {records} queryable after {timeout:.0f} s")
        if task.done() and not phase.upload:
            phase.upload, phase.uploader_cpu = now, task.result()
        queryable = await probe.queryable(since)
        ends, committed = await probe.offsets()
        phase.series.append((now, ends - committed, records - queryable))
        for group, (_, rss) in by_group(proc_snapshot(), roots).items():
            phase.rss[group] = max(phase.rss.get(group, 0), rss)
    phase.done = time.monotonic() - start
    if not phase.upload:
        phase.uploader_cpu = await task
        phase.upload = time.monotonic() - start
    last = by_group(proc_snapshot(), roots)
    phase.cpu = {g: last[g][0] - first[g][0] for g in roots if g in last and g in first}
    phase.cpu["uploader"] = phase.uploader_cpu
    return phase


async def apart(
    path: Path, records: int, stack: Stack, probe: Probe, timeout: float, profile: Path | None
) -> tuple[float, float]:
    """Bulk ingest alone (normalizer stopped), then the normalizer alone on that backlog: records/s
    each. With `profile`, the draining normalizer runs under pyinstrument (its text report there)."""
    env = stack.normalizer_env()
    stack.stop_normalizer()
    since = datetime.now(UTC) - timedelta(seconds=1)
    ends_before, _ = await probe.offsets()
    start = time.monotonic()
    await asyncio.to_thread(upload, path, stack.env, stack.log)
    ingest_rate = records / (time.monotonic() - start)
    while (await probe.offsets())[0] < ends_before + records:  # the relay has published all of it
        await asyncio.sleep(0.2)
    if profile is None:
        await asyncio.to_thread(stack.dev, "dev-up")  # starts the normalizer again
    else:
        pyinstrument = [str(ROOT / ".venv/bin/pyinstrument"), "-r", "text", "-o", str(profile)]
        profiled = await asyncio.to_thread(stack.add_normalizer, env, pyinstrument)
    _, committed_before = await probe.offsets()
    while (backlog := await probe.offsets())[1] == committed_before:
        await asyncio.sleep(0.05)
    t0 = time.monotonic()
    pending = backlog[0] - backlog[1]
    while (now := await probe.offsets())[0] > now[1]:
        if time.monotonic() - t0 > timeout:
            raise RuntimeError("the normalizer did not drain its backlog in time")
        await asyncio.sleep(0.05)
    normalizer_rate = pending / (time.monotonic() - t0)
    while await probe.queryable(since) < records:
        await asyncio.sleep(0.2)
    if profile is not None:
        await asyncio.to_thread(_stop, profiled.pid, signal.SIGINT)  # pyinstrument writes its report
        stack.extra.remove(profiled)
        await asyncio.to_thread(stack.dev, "dev-up")
    return ingest_rate, normalizer_rate


def report(phase: Phase) -> None:
    print(f"\n{phase.name}: {phase.records} records, upload {phase.upload:.1f} s, all queryable at "
          f"{phase.done:.1f} s: {phase.rate:.0f} records/s; "
          f"lag zero {phase.lag_zero:.1f} s after the upload")  # fmt: skip
    every = max(1, len(phase.series) // 20)
    print(f"  {'t/s':>6} {'kafka lag':>10} {'not queryable':>14}")
    shown = phase.series[::every]
    for t, lag, missing in shown + phase.series[-1:] if shown[-1] != phase.series[-1] else shown:
        print(f"  {t:6.1f} {lag:10d} {missing:14d}")
    print(f"  {'process':<18} {'CPU µs/record':>14} {'peak private RSS MiB':>21}")
    for name in sorted(phase.cpu, key=lambda n: -phase.cpu[n]):
        print(f"  {name:<18} {phase.cpu[name] / phase.records * 1e6:14.0f} {phase.rss.get(name, 0) / 2**20:21.0f}")
    print(f"  {'total':<18} {sum(phase.cpu.values()) / phase.records * 1e6:14.0f}")


async def run(args: argparse.Namespace, stack: Stack, work: Path) -> None:
    counts = [int(n) for n in args.normalizers.split(",")]
    files = {}
    for n, name in enumerate(["warm-up", "apart", *[f"e2e-{c}" for c in counts]]):
        files[name] = work / f"{name}.ndjson"
        generate(files[name], 2000 if name == "warm-up" else args.records, args.seed + n)
    size = files["apart"].stat().st_size
    print(f"data: {args.records} Synthea-shaped FHIR resources per phase ({size / 2**20:.0f} MiB), seed {args.seed}")
    stack.dev("dev-up")
    stack.env |= stack.exports()
    print(f"stack: {stack.state} (fsync on, {args.sampling} of traces kept), "
          f"load average {os.getloadavg()[0]:.1f} at start")  # fmt: skip
    probe = Probe(stack.env)
    await probe.start()
    try:
        await end_to_end("warm-up", files["warm-up"], 2000, stack, probe, args.timeout)
        phases = []
        for c in counts:
            while len(stack.extra) + 1 < c:
                stack.add_normalizer(stack.normalizer_env())
            phases.append(await end_to_end(f"end to end, {c} normalizer(s)", files[f"e2e-{c}"], args.records,
                                           stack, probe, args.timeout))  # fmt: skip
            report(phases[-1])
            print(f"  load average {os.getloadavg()[0]:.1f}")
            if c == counts[0]:
                profile = work / "normalizer-profile.txt" if args.profile else None
                ingest_rate, normalizer_rate = await apart(
                    files["apart"], args.records, stack, probe, args.timeout, profile
                )
                print(f"\napart: bulk ingest alone {ingest_rate:.0f} records/s (normalizer stopped), "
                      f"normalizer alone {normalizer_rate:.0f} records/s on that backlog: "
                      f"ratio {normalizer_rate / ingest_rate:.2f}; load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    finally:
        await probe.close()
    if len(phases) > 1:
        rates = " vs ".join(f"{p.rate:.0f}" for p in phases)
        print(f"\nscale-out: {rates} records/s end to end with {' vs '.join(map(str, counts))} normalizer "
              f"processes ({phases[-1].rate / phases[0].rate:.2f}x)")  # fmt: skip
    head = phases[0]
    print(f"e2e: {head.rate:.0f} records/s end to end; normalizer/ingest {normalizer_rate / ingest_rate:.2f}; "
          f"lag zero {head.lag_zero:.1f} s after upload")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=50_000, help="Resources per phase (1000000 for the headline).")
    parser.add_argument("--normalizers", default="1,2", help="Normalizer processes of each end-to-end phase.")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=1800, help="Longest wait for a phase, seconds.")
    parser.add_argument("--profile", action="store_true", help="The normalizer alone under pyinstrument.")
    parser.add_argument(
        "--sampling",
        choices=sorted(SAMPLING),
        default="1%",
        help="Traces kept (1%%: production's setting, docs/observability.md; 100%%: `make dev`'s).",
    )
    parser.add_argument("--keep", action="store_true", help="Leave the stack running (then `make down`).")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    state = Path(os.environ.get("EXCHANGE_DEV_DIR") or work / "dev")
    env = {**os.environ, "EXCHANGE_DEV_DIR": str(state), **SAMPLING[args.sampling],
           "EXCHANGE_DEV_PORT_BASE": os.environ.get("EXCHANGE_DEV_PORT_BASE", "21000")}  # fmt: skip
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the stack on the way out
    with (work / "bench.log").open("ab") as log:
        stack = Stack(state, env, log)
        try:
            asyncio.run(run(args, stack, work))
        finally:
            for proc in stack.extra:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(30)
            if not args.keep:
                stack.dev("dev-down")
            print(f"logs: {work} (stack: {state})", file=sys.stderr)


if __name__ == "__main__":
    main()
