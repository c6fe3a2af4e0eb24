"""A worker's probe server: `/healthz`, `/readyz` and `/metrics` of the shared service app on a
port of its own.

Workers (the outbox relay, the normalizer) have no HTTP API, so Kubernetes probes them here. A
worker starts this server before it reaches its engines: while it waits for Postgres or Kafka it
is alive (`/healthz` 200) and not ready (`/readyz` 503 naming what is missing). Checks can be
swapped in `readiness` as the worker connects (`waiting_for` stands in until then).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator, Mapping
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry

from exchange.core.http import ReadinessCheck, create_service_app
from exchange.core.server import uvicorn_options

START_TIMEOUT = 10.0


def waiting_for(dependency: str) -> ReadinessCheck:
    """A readiness check that fails until the worker replaces it with a real one."""

    async def check() -> None:
        raise ConnectionError(f"{dependency}: not connected yet")

    return check


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The worker owns SIGTERM/SIGINT (it drains, then stops this server); uvicorn's own
        # handlers would swallow them.
        yield


class ProbeServer:
    """The shared service app (probes and metrics only) served by uvicorn inside a worker's loop."""

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        registry: CollectorRegistry,
        readiness: Mapping[str, ReadinessCheck],
        *,
        reuse_port: bool = False,
        count_requests: bool = True,
    ) -> None:
        """`reuse_port`: bind with SO_REUSEPORT, so each process of a server with several
        (`WEB_CONCURRENCY`) can serve its own metrics on the same port. `count_requests=False`:
        the probe requests are not counted in `registry` (an HTTP service's metrics port)."""
        self.app = create_service_app(name, registry=registry, readiness=readiness, count_requests=count_requests,
                                      docs_url=None, redoc_url=None, openapi_url=None)  # fmt: skip
        config = uvicorn.Config(self.app, host=host, port=port, lifespan="off", **uvicorn_options())
        self._server = _Server(config)
        self._sockets: list[socket.socket] | None = None
        if reuse_port:
            sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            self._sockets = [sock]
        self._task: asyncio.Task[Any] | None = None

    @property
    def readiness(self) -> dict[str, ReadinessCheck]:
        """The live checks of `/readyz`; assign a key to replace a check."""
        checks: dict[str, ReadinessCheck] = self.app.state.readiness
        return checks

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        (server,) = self._server.servers
        return int(server.sockets[0].getsockname()[1])

    async def start(self) -> ProbeServer:
        """Bind and serve. uvicorn ends the process (SystemExit) when the port cannot be bound."""
        self._task = asyncio.create_task(self._server.serve(sockets=self._sockets))
        async with asyncio.timeout(START_TIMEOUT):
            while not self._server.started:
                if self._task.done():
                    raise OSError("the probe server stopped while starting")
                await asyncio.sleep(0.02)
        return self

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(Exception, SystemExit):
            await asyncio.wait_for(self._task, timeout=5)
