"""PostgreSQL as a local process: initdb into a directory, start on a free port, restart in place.

The binaries come from Debian's `postgresql` package (`hack/install/postgres.sh` links the bin dir
to `$EXCHANGE_CACHE/postgres/bin`). The cluster listens on 127.0.0.1 only, with its unix socket
inside the data dir; host connections from 127.0.0.1 are trusted and the superuser also has a
password, so the DSN carries one (set `password_auth=True` to require it with scram-sha-256).

The server refuses to run as root: when we are root it runs as the `postgres` system user (the
package creates it) through `setpriv`, and the data dir is chowned to that user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exchange_devtools.engines.base import (
    CACHE_DIR,
    EngineError,
    EngineProcess,
    free_port,
    port_bindable,
    run,
)

INSTALLER = "postgres.sh"
SUPPORTED_MAJORS = (17, 16, 15, 14)
DEFAULT_USER = "exchange"
DEFAULT_PASSWORD = "exchange"  # a local dev/test cluster on 127.0.0.1 only
DEFAULT_DATABASE = "exchange"
RUN_AS_WHEN_ROOT = "postgres"
_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes; keep room for "/.s.PGSQL.NNNNN"


def postgres_bindir() -> Path:
    """The bin dir holding initdb/postgres/pg_isready, or a one-line EngineError naming the installer."""
    candidates = [CACHE_DIR / "postgres" / "bin"]
    candidates += [Path(f"/usr/lib/postgresql/{major}/bin") for major in SUPPORTED_MAJORS]
    for bindir in candidates:
        if all((bindir / tool).exists() for tool in ("initdb", "postgres", "pg_isready")):
            return bindir.resolve()  # the real dir: /root/... may be closed to the postgres user
    raise EngineError(
        f"PostgreSQL {'/'.join(map(str, SUPPORTED_MAJORS))} (initdb, postgres) is missing; "
        f"run `bash hack/install/{INSTALLER}` (or `make engines`)"
    )


def _run_as_prefix() -> tuple[list[str], pwd.struct_passwd | None]:
    """argv prefix that drops root privileges, plus the user it drops to (None when not root)."""
    if os.geteuid() != 0:
        return [], None
    try:
        user = pwd.getpwnam(RUN_AS_WHEN_ROOT)
    except KeyError as exc:
        raise EngineError(
            f"running as root and no `{RUN_AS_WHEN_ROOT}` user to run PostgreSQL as; "
            f"run `bash hack/install/{INSTALLER}`"
        ) from exc
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise EngineError("running as root and `setpriv` (util-linux) is missing; cannot drop privileges")
    prefix = [setpriv, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", "--"]
    return prefix, user


def _hand_over(path: Path, user: pwd.struct_passwd) -> None:
    """Let `user` own `path` (recursively) and traverse every ancestor that blocks it (adds o+x)."""
    for dirpath, dirnames, filenames in os.walk(path):
        os.chown(dirpath, user.pw_uid, user.pw_gid)
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), user.pw_uid, user.pw_gid)
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(parent, mode | stat.S_IXOTH)


@dataclass
class PostgresServer:
    """A local PostgreSQL cluster; `engine` is the postmaster process."""

    engine: EngineProcess
    port: int
    data_dir: Path
    user: str = DEFAULT_USER
    password: str = DEFAULT_PASSWORD
    database: str = DEFAULT_DATABASE
    host: str = "127.0.0.1"

    @property
    def dsn(self) -> str:
        """`postgresql://user:pw@127.0.0.1:PORT/db`, for asyncpg, psycopg and SQLAlchemy alike."""
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"

    def dsn_for(self, database: str) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{database}"

    def env(self) -> dict[str, str]:
        return {"DATABASE_URL": self.dsn}

    @property
    def running(self) -> bool:
        return self.engine.proc is not None and self.engine.proc.poll() is None

    def start(self) -> PostgresServer:
        self.engine.start()
        self._ensure_database()
        return self

    def stop(self, timeout: float = 20.0) -> None:
        """Fast shutdown (SIGINT to the postmaster: roll back sessions, checkpoint, exit)."""
        proc = self.engine.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=timeout)
        self.engine.stop()  # reaps, or SIGTERM/SIGKILLs what is left of the process group

    def kill(self) -> None:
        """Crash it: SIGKILL the postmaster and its children; the next start runs crash recovery.

        Each child calls setsid(), so killing the process group alone would leave backends
        holding the shared memory, and the next start would refuse to run.
        """
        proc = self.engine.proc
        if proc is None or proc.poll() is not None:
            return
        children = _children(proc.pid)
        self.engine.kill()
        for pid in children:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in children):
            time.sleep(0.05)

    def restart(self) -> PostgresServer:
        """Stop and start again on the same port with the same data dir."""
        self.stop()
        return self.start()

    def _ensure_database(self) -> None:
        bindir = postgres_bindir()
        out = run(
            [
                str(bindir / "psql"),
                "-X",
                "-A",
                "-t",
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                "postgres",
                "-c",
                f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'",
            ],
            what="postgres: look up the database",
            env={**os.environ, "PGPASSWORD": self.password, "PGCONNECT_TIMEOUT": "5"},
        )
        if out.strip() != "1":
            run(
                [
                    str(bindir / "createdb"),
                    "-h",
                    self.host,
                    "-p",
                    str(self.port),
                    "-U",
                    self.user,
                    self.database,
                ],
                what=f"postgres: createdb {self.database}",
                env={**os.environ, "PGPASSWORD": self.password},
            )


def postgres_server(
    workdir: Path,
    *,
    port: int | None = None,
    name: str = "postgres",
    user: str = DEFAULT_USER,
    password: str = DEFAULT_PASSWORD,
    database: str = DEFAULT_DATABASE,
    durable: bool = True,
    password_auth: bool = False,
    max_connections: int = 200,
    timeout: float = 60.0,
    detach: bool = False,
) -> PostgresServer:
    """Build (initdb when needed) but do not start a cluster in `workdir/data`.

    `durable=False` turns off fsync, synchronous_commit and full_page_writes: for tests only,
    a machine crash can lose the data. `port=None` picks a free port, or the one the data dir
    used last time when it is free.
    """
    bindir = postgres_bindir()
    prefix, run_as = _run_as_prefix()
    workdir = Path(workdir).resolve()
    data_dir = workdir / "data"
    port_file = workdir / "port"
    if port is None and port_file.exists():
        with contextlib.suppress(ValueError):
            previous = int(port_file.read_text().strip())
            if port_bindable(previous):
                port = previous
    if port is None:
        port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    port_file.write_text(str(port))

    if not (data_dir / "PG_VERSION").exists():
        _initdb(bindir, prefix, run_as, workdir, data_dir, user, password, password_auth)
    elif run_as is not None:
        _hand_over(data_dir, run_as)

    socket_dir = str(data_dir) if len(str(data_dir)) <= _MAX_SOCKET_PATH else ""
    settings = {
        "listen_addresses": "127.0.0.1",
        "port": str(port),
        "unix_socket_directories": socket_dir,
        "max_connections": str(max_connections),
        "shared_buffers": "64MB",
        "log_line_prefix": "%m [%p] %q%u@%d ",
        "logging_collector": "off",
    }
    if not durable:
        settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
    argv = [*prefix, str(bindir / "postgres"), "-D", str(data_dir)]
    for key, value in settings.items():
        argv += ["-c", f"{key}={value}"]

    isready = str(bindir / "pg_isready")

    def ready() -> bool:
        probe = subprocess.run(
            [isready, "-q", "-h", "127.0.0.1", "-p", str(port), "-t", "1", "-U", user, "-d", "postgres"],
            capture_output=True,
            timeout=5,
            check=False,
        )
        return probe.returncode == 0

    engine = EngineProcess(
        name=name,
        argv=argv,
        workdir=workdir,
        ready=ready,
        env={"LC_ALL": "C.UTF-8" if Path("/usr/lib/locale/C.utf8").exists() else "C"},
        timeout=timeout,
        detach=detach,
    )
    return PostgresServer(engine=engine, port=port, data_dir=data_dir, user=user, password=password, database=database)


def start_postgres(workdir: Path, **kwargs: Any) -> PostgresServer:
    """initdb (first time) and start; returns once it accepts connections and `database` exists."""
    return postgres_server(workdir, **kwargs).start()


def _children(ppid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == ppid:
                    found.append(int(entry.name))
    return found


def _initdb(
    bindir: Path,
    prefix: list[str],
    run_as: pwd.struct_passwd | None,
    workdir: Path,
    data_dir: Path,
    user: str,
    password: str,
    password_auth: bool,
) -> None:
    if data_dir.exists() and any(data_dir.iterdir()):
        raise EngineError(f"postgres: {data_dir} is not empty and holds no cluster (no PG_VERSION)")
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    pwfile = workdir / ".pgpass-init"
    pwfile.write_text(password + "\n")
    pwfile.chmod(0o600)
    if run_as is not None:
        _hand_over(data_dir, run_as)
        os.chown(pwfile, run_as.pw_uid, run_as.pw_gid)
    started = time.monotonic()
    try:
        run(
            [
                *prefix,
                str(bindir / "initdb"),
                "-D",
                str(data_dir),
                "-U",
                user,
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                f"--auth-host={'scram-sha-256' if password_auth else 'trust'}",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
            what=f"postgres: initdb {data_dir}",
            cwd=str(workdir),
        )
    finally:
        pwfile.unlink(missing_ok=True)
    with open(workdir / "initdb.log", "a") as log:
        log.write(f"initdb took {time.monotonic() - started:.2f}s\n")
