"""load_archive against a private containerd (its own root, state and socket in a temp dir).

Needs root and the containerd + ctr that `bash hack/install/node.sh` builds (`make engines`); it
fails, never skips, without them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchange_devtools import images
from exchange_devtools.engines.base import BIN_DIR, EngineError

CONTAINERD = BIN_DIR / "containerd"
CTR = BIN_DIR / "ctr"


def private_config(tmp: Path) -> str:
    return f"""version = 2
root = "{tmp}/root"
state = "{tmp}/state"
# Nothing outside the temp dir: no NRI socket, no /opt/containerd.
disabled_plugins = ["io.containerd.nri.v1.nri"]
[grpc]
  address = "{tmp}/containerd.sock"
[ttrpc]
  address = "{tmp}/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{tmp}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
"""


@pytest.fixture
def containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    assert os.geteuid() == 0, "containerd needs root"
    for binary in (CONTAINERD, CTR):
        assert binary.exists(), f"{binary} is missing: run `bash hack/install/node.sh` (or `make engines`)"
    # A short path: unix socket paths are limited to 108 bytes.
    tmp = Path(tmp_path_factory.mktemp("ctd"))
    (tmp / "config.toml").write_text(private_config(tmp))
    socket = tmp / "containerd.sock"
    with open(tmp / "containerd.log", "wb") as log:
        proc = subprocess.Popen(
            [str(CONTAINERD), "--config", str(tmp / "config.toml")],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        while not socket.is_socket():
            assert proc.poll() is None, (tmp / "containerd.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "containerd did not create its socket in 30 s"
            time.sleep(0.1)
        yield socket
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        subprocess.run(["umount", "-R", str(tmp / "root")], capture_output=True, check=False)


def test_load_archive_imports_once_under_the_full_reference(containerd: Path, tmp_path: Path):
    rootfs = tmp_path / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "bin" / "hello").write_text("#!/bin/sh\necho hi\n")
    (rootfs / "bin" / "hello").chmod(0o755)
    archive = images.rootfs_image(
        "localhost/exchange-test-hello:1", rootfs, tmp_path / "hello.tar", entrypoint=["/bin/hello"], user="65532"
    )
    assert images.load_archive(archive, "localhost/exchange-test-hello:1", address=containerd) is True
    assert images.load_archive(archive, "localhost/exchange-test-hello:1", address=containerd) is False

    listed = images.containerd_images(containerd)
    _, digest = images.archive_manifest_digest(archive)
    assert listed["localhost/exchange-test-hello:1"] == digest
    assert not [ref for ref in listed if ref.startswith("import-")], listed

    # A new tree under the same reference is imported again and the reference moves.
    (rootfs / "bin" / "hello").write_text("#!/bin/sh\necho hello\n")
    archive = images.rootfs_image(
        "localhost/exchange-test-hello:1", rootfs, tmp_path / "hello.tar", entrypoint=["/bin/hello"], user="65532"
    )
    assert images.load_archive(archive, "localhost/exchange-test-hello:1", address=containerd) is True
    assert images.containerd_images(containerd)["localhost/exchange-test-hello:1"] != digest


def test_load_archive_without_a_node_is_one_line(tmp_path: Path):
    (tmp_path / "rootfs").mkdir()
    archive = images.rootfs_image("localhost/x:1", tmp_path / "rootfs", tmp_path / "x.tar", entrypoint=[])
    with pytest.raises(EngineError, match=r"^the local node is not running: run `make kube-up` first$"):
        images.load_archive(archive, "localhost/x:1", address=tmp_path / "missing.sock")
