"""An S3 server as a local process: s3proxy (Apache-2.0) with its filesystem backend.

The self-contained jar comes from Maven Central (`hack/install/s3.sh` puts it at
`$EXCHANGE_CACHE/s3proxy-<version>/s3proxy.jar`). Buckets are directories under `<workdir>/data`,
so objects survive a restart; requests are path-style and signed (AWS SigV2 or SigV4) with the
access key and secret below. Readiness is an S3 answer over HTTP (any status with an
`x-amz-request-id` header: the anonymous probe gets 403 AccessDenied from a live server).
"""

from __future__ import annotations

import contextlib
import http.client
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exchange_devtools.engines.base import (
    CACHE_DIR,
    EngineError,
    EngineProcess,
    free_port,
    java_binary,
    port_bindable,
)

S3PROXY_VERSION = "3.0.0"  # keep equal to hack/install/s3.sh
INSTALLER = "s3.sh"
S3PROXY_JAR = CACHE_DIR / f"s3proxy-{S3PROXY_VERSION}" / "s3proxy.jar"
DEFAULT_ACCESS_KEY = "exchange"
DEFAULT_SECRET_KEY = "exchange-dev-secret"  # a local dev/test server on 127.0.0.1 only
DEFAULT_REGION = "us-east-1"
JVM_OPTS = (
    "-Xms32m",
    "-XX:+UseSerialGC",  # G1 cost ~1.5x the CPU per PUT here, ParallelGC no better than Serial
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
    # s3proxy's logback prints its own configuration status on every start otherwise.
    "-Dlogback.statusListenerClass=ch.qos.logback.core.status.NopStatusListener",
)
# Tests start many short-lived servers: C1 only starts ~0.2 s sooner and spends ~0.75 s less CPU.
# A long-running server (`make dev`, benchmarks) gets C2 (`long_running=True`); measured together
# with 8 Jetty threads it spent ~0.4 ms of CPU per 300-byte PUT against ~0.9 ms.
SHORT_LIVED_JVM_OPTS = ("-XX:TieredStopAtLevel=1",)
# Jetty's default pool (200 threads) kept ~40 runnable threads on 2 cores; 8 was the measured
# sweet spot (4 and 16 both did worse). Requests beyond it wait in Jetty's queue.
JETTY_MAX_THREADS = 8
# Where a warm s3proxy's CPU goes per small PUT (perf with the JIT's symbol map): two thirds is
# the kernel creating the file (openat/ext4_create ~28 %), its extended attributes (one each for
# md5, content-type, storage tier and every x-amz-meta-* header, ~17 %), write and rename; Jetty's
# parser ~8 %, SigV4 checking ~3 %, GC ~2 %. No property or JVM flag moved it by 10 %. On ext4
# without a journal (this machine's /), creating files within minutes of deleting many others
# costs 1.5-3x (ext4 skips recently freed inodes one by one), so benchmark runs should not
# follow a large delete on the same filesystem (or keep their data on tmpfs). A new server needs
# ~150k PUTs (~60 s at full speed on 2 cores) before C2 is done: CPU per 300-byte PUT fell from
# ~1.2 ms, plus ~0.4 ms in the compiler threads, to ~0.3 ms on tmpfs and ~0.45-0.5 ms on ext4.


def s3proxy_jar() -> Path:
    if not S3PROXY_JAR.exists():
        raise EngineError(f"{S3PROXY_JAR} is missing; run `bash hack/install/{INSTALLER}` (or `make engines`)")
    return S3PROXY_JAR


def s3_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when an S3 server answers an HTTP request on host:port."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        response.read()
        return response.getheader("x-amz-request-id") is not None
    finally:
        conn.close()


@dataclass
class S3Server:
    """A local S3 endpoint; `engine` is the JVM running s3proxy."""

    engine: EngineProcess
    port: int
    workdir: Path
    access_key: str = DEFAULT_ACCESS_KEY
    secret_key: str = DEFAULT_SECRET_KEY
    region: str = DEFAULT_REGION
    host: str = "127.0.0.1"

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    def env(self) -> dict[str, str]:
        return {
            "S3_ENDPOINT_URL": self.endpoint_url,
            # The names exchange.core.settings.S3Settings reads.
            "S3_ACCESS_KEY_ID": self.access_key,
            "S3_SECRET_ACCESS_KEY": self.secret_key,
            "S3_REGION": self.region,
        }

    def client_kwargs(self) -> dict[str, str]:
        """Keyword arguments for `session.create_client("s3", **kwargs)` (boto3/aiobotocore)."""
        return {
            "endpoint_url": self.endpoint_url,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "region_name": self.region,
        }

    @property
    def running(self) -> bool:
        return self.engine.proc is not None and self.engine.proc.poll() is None

    def start(self) -> S3Server:
        self.engine.start()
        return self

    def stop(self, timeout: float = 15.0) -> None:
        self.engine.stop(timeout=timeout)

    def kill(self) -> None:
        self.engine.kill()

    def restart(self) -> S3Server:
        """Stop and start on the same port with the same data dir."""
        self.stop()
        return self.start()


def _previous_port(path: Path) -> int | None:
    with contextlib.suppress(ValueError, OSError):
        port = int(path.read_text().strip())
        return port if port_bindable(port) else None
    return None


def s3_server(
    workdir: Path,
    *,
    port: int | None = None,
    name: str = "s3",
    access_key: str = DEFAULT_ACCESS_KEY,
    secret_key: str = DEFAULT_SECRET_KEY,
    region: str = DEFAULT_REGION,
    heap: str = "256m",
    timeout: float = 60.0,
    detach: bool = False,
    long_running: bool = False,
) -> S3Server:
    """Write the s3proxy config for `workdir` (data in `workdir/data`); the server is not started.

    `port=None` picks a free port, or the one this workdir used last time when still free.
    `long_running=True` trades a slower start for less CPU per request (see JVM options above).
    """
    jar = s3proxy_jar()
    java = java_binary(INSTALLER)
    workdir = Path(workdir).resolve()
    data_dir = workdir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    port_file = workdir / "port"
    port = port or _previous_port(port_file) or free_port()
    port_file.write_text(f"{port}\n")

    config = workdir / "s3proxy.conf"
    props = {
        "s3proxy.endpoint": f"http://127.0.0.1:{port}",
        "s3proxy.authorization": "aws-v2-or-v4",
        "s3proxy.identity": access_key,
        "s3proxy.credential": secret_key,
        # botocore >= 1.36 sends x-amz-checksum-* headers by default, which s3proxy does not
        # know; ignore them (the checksum is not verified) so default-configured clients work.
        "s3proxy.ignore-unknown-headers": "true",
        "s3proxy.jetty.max-threads": str(JETTY_MAX_THREADS),
        # Buckets are directories; object metadata lives in extended attributes.
        "jclouds.provider": "filesystem-nio2",
        "jclouds.filesystem.basedir": str(data_dir),
        "jclouds.identity": access_key,
        "jclouds.credential": secret_key,
        "jclouds.region": region,
    }
    config.write_text(
        "# Written by exchange_devtools.engines.s3; rewritten on every start.\n"
        + "".join(f"{key}={value}\n" for key, value in props.items())
    )
    config.chmod(0o600)

    def ready() -> bool:
        return s3_answers("127.0.0.1", port)

    jvm_opts = JVM_OPTS if long_running else (*JVM_OPTS, *SHORT_LIVED_JVM_OPTS)
    engine = EngineProcess(
        name=name,
        argv=[java, f"-Xmx{heap}", *jvm_opts, "-jar", str(jar), "--properties", str(config)],
        workdir=workdir,
        ready=ready,
        env={"LOG_LEVEL": "info"},
        timeout=timeout,
        detach=detach,
    )
    return S3Server(
        engine=engine, port=port, workdir=workdir, access_key=access_key, secret_key=secret_key, region=region
    )


def start_s3(workdir: Path, **kwargs: Any) -> S3Server:
    """Start s3proxy; returns once it answers HTTP."""
    return s3_server(workdir, **kwargs).start()
