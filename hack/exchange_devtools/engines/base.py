"""One way to run a real engine as a local process: start, wait until it answers, stop.

Used by the pytest fixtures (temp dirs, free ports, session scope) and by `make dev` (state in
`.dev/`, detached, pid files so `make down` can stop it). Every wait is bounded; a failure is one
line naming the engine, the reason and the path of its log.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CACHE_DIR = Path(
    os.environ.get("EXCHANGE_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "exchange"
)
BIN_DIR = CACHE_DIR / "bin"
REPO_ROOT = Path(__file__).resolve().parents[3]


class EngineError(RuntimeError):
    """An engine could not be installed, started or reached. The message is one line."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_ports(count: int) -> tuple[int, ...]:
    """`count` distinct TCP ports that are free right now."""
    ports: list[int] = []
    while len(ports) < count:
        if (port := free_port()) not in ports:
            ports.append(port)
    return tuple(ports)


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def port_bindable(port: int, host: str = "127.0.0.1") -> bool:
    """True when a server could listen on host:port now. Binds as servers do (SO_REUSEADDR), so
    the connections of a stopped server left in TIME_WAIT do not count, only a live socket does."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def port_listener(port: int) -> str | None:
    """Who listens on TCP `port` (any address): "pid 123 (java)", "another user's process" when
    the socket's owner is not visible, None when nothing listens. Linux: /proc/net/tcp{,6}."""
    sockets = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                    sockets.add(f"socket:[{fields[9]}]")
    if not sockets:
        return None
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if any(os.readlink(fd) in sockets for fd in (proc / "fd").iterdir()):
                    return f"pid {proc.name} ({(proc / 'comm').read_text().strip()})"
    return "another user's process"


def pid_alive(pid: int) -> bool:
    """True while process `pid` runs. A zombie (exited, not yet reaped) does not; a thread group
    leader that exited first is a zombie while its other threads, which may still hold its
    sockets, finish: those count."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return False
    for task in tasks:
        with contextlib.suppress(OSError, IndexError):
            if (task / "stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
                return True
    return False


def java_binary(installer: str) -> str:
    """`$JAVA_HOME/bin/java` or the java on PATH (17+; the install scripts check the version)."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise EngineError(f"java (17+) is missing; run `bash hack/install/{installer}`")
    return found


def require_binary(path: Path, installer: str) -> Path:
    """Fail with a one-line hint when an engine binary is not installed yet."""
    if not path.exists():
        raise EngineError(f"{path} is missing; run `bash hack/install/{installer}` (or `make engines`)")
    return path


@dataclass
class EngineProcess:
    """A started (or startable) engine process.

    `ready` is a probe returning True once the engine answers; `start()` polls it until
    `timeout` seconds pass or the process dies, then raises EngineError.
    """

    name: str
    argv: Sequence[str]
    workdir: Path
    ready: Callable[[], bool]
    env: dict[str, str] = field(default_factory=dict)
    timeout: float = 60.0
    detach: bool = False
    """Detached processes outlive the caller (make dev); their pid goes to `<workdir>/<name>.pid`."""
    proc: subprocess.Popen[bytes] | None = None
    ready_seconds: float = 0.0
    """Seconds from spawn until the readiness probe first answered."""

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def pid_path(self) -> Path:
        return self.workdir / f"{self.name}.pid"

    def start(self) -> EngineProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env}
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                list(self.argv),
                cwd=self.workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_path.write_text(str(self.proc.pid))
        deadline = started + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EngineError(
                    f"{self.name} exited with code {self.proc.returncode} while starting; log: {self.log_path}"
                )
            with contextlib.suppress(Exception):
                if self.ready():
                    self.ready_seconds = time.monotonic() - started
                    return self
            time.sleep(0.1)
        self.stop()
        raise EngineError(f"{self.name} not ready after {self.timeout:.0f}s; log: {self.log_path}")

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise EngineError(f"{self.name} was never started")
        return self.proc.pid

    def rss_bytes(self) -> int:
        """Resident memory of the engine's process group leader (Linux /proc)."""
        status = Path(f"/proc/{self.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process group, then SIGKILL after `timeout` seconds."""
        if self.proc is None:
            return
        stop_pid(self.proc.pid, timeout)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=1)
        with contextlib.suppress(FileNotFoundError):
            self.pid_path.unlink()

    def kill(self) -> None:
        """SIGKILL the process group at once (crash tests)."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def tail_log(self, lines: int = 80) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return f"(no log at {self.log_path})"


PORT_ATTEMPTS = 3


def start_on_free_ports(engine: EngineProcess, prepare: Callable[[], None], *, fixed: bool) -> None:
    """Start `engine` after `prepare()` (which picks fresh ports unless they are `fixed` and writes
    its argv or config); a start lost to another process binding a port first is tried again with
    new ports, up to PORT_ATTEMPTS times."""
    for attempt in range(1, PORT_ATTEMPTS + 1):
        prepare()
        try:
            engine.start()
            return
        except EngineError:
            if fixed or attempt == PORT_ATTEMPTS or "address already in use" not in engine.tail_log():
                raise


def stop_pid(pid: int, timeout: float = 15.0, *, sig: int = signal.SIGTERM, group: bool = True) -> bool:
    """Stop a process (group) started by EngineProcess; True when it was running.

    Sends `sig` (to the group, or to `pid` alone), waits up to `timeout` seconds, then SIGKILLs.
    """
    try:
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # Reap our own child if it is one; ignore when it is not.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL) if group else os.kill(pid, signal.SIGKILL)
    return True


def run(argv: Sequence[str], *, what: str, timeout: float = 120.0, **kw: object) -> str:
    """Run a short setup command (initdb, storage format); one-line EngineError on failure."""
    try:
        out = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **kw,  # type: ignore[call-overload]
        )
    except subprocess.TimeoutExpired as exc:
        raise EngineError(f"{what}: timed out after {timeout:.0f}s") from exc
    if out.returncode != 0:
        last = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["no output"]
        raise EngineError(f"{what}: exit {out.returncode}: {last[0]}")
    return str(out.stdout)
