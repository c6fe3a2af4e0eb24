"""Who holds a port, and whether a server could listen there, as `make dev` asks before it starts
something again on a recorded port (plain sockets of this process, no engine)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

from exchange_devtools.engines.base import pid_alive, port_bindable, port_listener


def test_a_listener_is_named_by_pid_and_command_and_the_port_is_taken() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        comm = Path("/proc/self/comm").read_text().strip()
        assert port_listener(port) == f"pid {os.getpid()} ({comm})"
        assert not port_bindable(port)
    assert port_listener(port) is None
    assert port_bindable(port)


def test_connections_left_in_time_wait_by_a_stopped_server_do_not_hold_its_port() -> None:
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as every server here does
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()  # the server side closes first: its end of the connection waits in TIME_WAIT
        client.close()
    with socket.socket() as plain, socket.socket() as probe:
        try:
            plain.bind(("127.0.0.1", port))
        except OSError:
            pass
        else:
            raise AssertionError("a bind without SO_REUSEADDR was expected to fail on a TIME_WAIT port")
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    assert port_listener(port) is None
    assert port_bindable(port)


def test_a_process_is_alive_until_it_exits() -> None:
    assert pid_alive(os.getpid())
    child = subprocess.Popen(["sleep", "0.1"])
    assert pid_alive(child.pid)
    deadline = time.monotonic() + 10
    while pid_alive(child.pid) and time.monotonic() < deadline:  # a zombie until reaped below: not alive
        time.sleep(0.01)
    assert Path(f"/proc/{child.pid}").exists() and not pid_alive(child.pid)
    child.wait()
