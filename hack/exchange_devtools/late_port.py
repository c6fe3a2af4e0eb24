"""An engine that starts after its client, for tests: a local port that refuses connections until
`open()`, then forwards each one to the real engine.

    with LatePort(postgres.port) as late:
        start_the_client(f"...127.0.0.1:{late.port}...")   # connection refused, as on a cold start
        late.open()                                          # the engine "comes up"

The forwarding runs on its own thread and event loop, so the client may be in-process (async or
not) or a subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

from exchange_devtools.engines.base import free_port

HOST = "127.0.0.1"


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(ConnectionError, OSError, RuntimeError):
        writer.close()


class LatePort:
    """`port` refuses connections until `open()`; from then on it forwards to `target_port`."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self._target = target_port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="late-port", daemon=True)
        self._server: asyncio.Server | None = None

    def __enter__(self) -> LatePort:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(HOST, self._target)
        await asyncio.gather(_copy(reader, up_writer), _copy(up_reader, writer))

    def open(self) -> None:
        """Start listening (and forwarding)."""

        async def listen() -> asyncio.Server:
            return await asyncio.start_server(self._pipe, HOST, self.port)

        self._server = asyncio.run_coroutine_threadsafe(listen(), self._loop).result(timeout=10)

    def close(self) -> None:
        if self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
