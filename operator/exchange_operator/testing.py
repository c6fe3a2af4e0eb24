"""Helpers to run the operator as a real process in integration tests and the benchmark.

`OperatorProcess` starts `python -m exchange_operator` against a kubeconfig (its log goes to a
file the tests print on failure); `install_crd` applies the generated CRD and waits until it is
served. Test code only; nothing here runs inside the operator.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from exchange_operator import crd

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.05) -> T:
    """Poll `probe` until it returns something truthy; TimeoutError naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
            if value:
                return value
        except Exception as exc:  # the API may 404 until the object exists
            last_error = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_error})")


def install_crd(api_client: Any) -> None:
    """Create or replace the ExchangePipeline CRD and wait until the API serves it."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    body = yaml.safe_load(crd.render())
    ext = client.ApiextensionsV1Api(api_client)
    try:
        ext.create_custom_resource_definition(body)
    except ApiException as exc:
        if exc.status != 409:
            raise
        current: Any = ext.read_custom_resource_definition(crd.CRD_NAME)
        body["metadata"]["resourceVersion"] = current.metadata.resource_version
        ext.replace_custom_resource_definition(crd.CRD_NAME, body)

    def established() -> bool:
        read: Any = ext.read_custom_resource_definition(crd.CRD_NAME)
        conds = read.status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conds)

    wait_for("the CRD to be established", established)


class OperatorProcess:
    """`python -m exchange_operator` as a child process with its own log file."""

    def __init__(self, kubeconfig: Path, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        package_root = str(Path(__file__).resolve().parents[1])
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p),
            **self.env,
        }
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "exchange_operator"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGINT (kopf shuts down gracefully), then SIGKILL after `timeout`."""
        if self.proc is None:
            return None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(timeout=5)

    def tail(self, lines: int = 80) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no operator log)"
