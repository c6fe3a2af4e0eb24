"""The local node's add-ons: CoreDNS, local-path-provisioner and the Skipper ingress controller.

Their images are made here from the static binaries `hack/install/addons.sh` builds (plus the
pause container compiled from Kubernetes' own pause.c and Debian's busybox-static for the
volume helper pod), so the node needs no registry. Manifests live in `hack/kube-node/*.yaml`
with `${NAME}` placeholders filled from `manifest_values()`.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

from exchange_devtools.engines.base import BIN_DIR, CACHE_DIR, REPO_ROOT, EngineError, run
from exchange_devtools.engines.kube_node import (
    CLUSTER_DOMAIN,
    DNS_SERVICE_IP,
    PAUSE_IMAGE,
    NodePaths,
)

KUBE_VERSION = "v1.34.4"
MANIFESTS = REPO_ROOT / "hack" / "kube-node"
ADDONS = ("coredns.yaml", "local-path.yaml", "ingress.yaml")
IMAGES_DIR = CACHE_DIR / "node" / "images"
INGRESS_PORT = int(os.environ.get("EXCHANGE_INGRESS_PORT", "18080"))
"""Where the ingress controller serves HTTP on 127.0.0.1 (away from `make dev`'s 8080-8082)."""
INGRESS_SUPPORT_PORT = INGRESS_PORT + 1
COREDNS_IMAGE = "localhost/coredns:v1.15.0"
SKIPPER_IMAGE = "localhost/skipper:v0.23.0"
PROVISIONER_IMAGE = "localhost/local-path-provisioner:v0.0.30"
HELPER_IMAGE = "localhost/busybox:1.35.0"
NONROOT = "65532:65532"


@dataclass(frozen=True)
class AddonImage:
    """A one-layer image: a few files (mostly one static binary) and how to start it."""

    ref: str
    files: dict[str, Path]
    entrypoint: list[str]
    user: str = NONROOT
    links: dict[str, str] = field(default_factory=dict)
    """Symlinks to create: path in the image -> target."""

    @property
    def archive(self) -> Path:
        return IMAGES_DIR / (self.ref.split("/", 1)[1].replace(":", "_") + ".tar")


def manifest_values(paths: NodePaths) -> dict[str, str]:
    return {
        "DNS_SERVICE_IP": DNS_SERVICE_IP,
        "CLUSTER_DOMAIN": CLUSTER_DOMAIN,
        "COREDNS_IMAGE": COREDNS_IMAGE,
        "SKIPPER_IMAGE": SKIPPER_IMAGE,
        "PROVISIONER_IMAGE": PROVISIONER_IMAGE,
        "HELPER_IMAGE": HELPER_IMAGE,
        "STORAGE_DIR": str(paths.storage),
        "INGRESS_PORT": str(INGRESS_PORT),
        "INGRESS_SUPPORT_PORT": str(INGRESS_SUPPORT_PORT),
    }


def render(name: str, values: dict[str, str]) -> str:
    return Template((MANIFESTS / name).read_text()).substitute(values)


# --- images -------------------------------------------------------------------------------------


def _pause_binary() -> Path:
    """Kubernetes' pause.c, from the module cache the kube build filled, compiled static (~0.7 MB)."""
    out = IMAGES_DIR / "pause-bin" / "pause"
    if out.exists():
        return out
    gomodcache = run(["go", "env", "GOMODCACHE"], what="go env").strip()
    source = Path(gomodcache) / f"k8s.io/kubernetes@{KUBE_VERSION}" / "build/pause/linux/pause.c"
    if not source.exists():
        run(["go", "mod", "download", f"k8s.io/kubernetes@{KUBE_VERSION}"], what="go mod download", cwd=CACHE_DIR)
    out.parent.mkdir(parents=True, exist_ok=True)
    run(["gcc", "-Os", "-static", f"-DVERSION={KUBE_VERSION}-local", "-o", str(out), str(source)], what="gcc pause")
    run(["strip", str(out)], what="strip pause")
    return out


def _busybox() -> Path:
    """Debian's busybox-static, unpacked from its package (the host does not get it installed)."""
    out = IMAGES_DIR / "busybox-bin" / "busybox"
    if out.exists():
        return out
    with tempfile.TemporaryDirectory(dir=CACHE_DIR) as tmp:
        run(["apt-get", "download", "busybox-static"], what="apt-get download busybox-static", cwd=tmp)
        deb = next(Path(tmp).glob("busybox-static_*.deb"))
        run(["dpkg-deb", "-x", str(deb), f"{tmp}/root"], what="dpkg-deb -x busybox-static")
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f"{tmp}/root/bin/busybox", out)
    return out


def addon_images() -> list[AddonImage]:
    busybox = _busybox()
    applets = run([str(busybox), "--list"], what="busybox --list").split()
    return [
        AddonImage(PAUSE_IMAGE, {"pause": _pause_binary()}, ["/pause"], user="65535:65535"),
        AddonImage(COREDNS_IMAGE, {"coredns": BIN_DIR / "coredns"}, ["/coredns"]),
        AddonImage(SKIPPER_IMAGE, {"skipper": BIN_DIR / "skipper"}, ["/skipper"]),
        AddonImage(
            PROVISIONER_IMAGE,
            {"local-path-provisioner": BIN_DIR / "local-path-provisioner"},
            ["/local-path-provisioner"],
        ),
        AddonImage(
            HELPER_IMAGE,
            {"bin/busybox": busybox},
            ["/bin/sh"],
            user="0:0",
            links={f"bin/{a}": "busybox" for a in applets if a != "busybox"},
        ),
    ]


def build_image(image: AddonImage) -> Path:
    """The image's OCI archive in the cache, rebuilt only when one of its files changed."""
    from exchange_devtools.images import rootfs_image

    newest = max(src.stat().st_mtime for src in image.files.values())
    if image.archive.exists() and image.archive.stat().st_mtime >= newest:
        return image.archive
    with tempfile.TemporaryDirectory(dir=CACHE_DIR) as tmp:
        root = Path(tmp) / "rootfs"
        for dest, src in image.files.items():
            (root / dest).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, root / dest)
        for dest, target in image.links.items():
            (root / dest).symlink_to(target)
        (root / "tmp").mkdir(mode=0o1777, exist_ok=True)
        image.archive.parent.mkdir(parents=True, exist_ok=True)
        return rootfs_image(image.ref, root, image.archive, entrypoint=image.entrypoint, user=image.user)


def load_addon_images(containerd_socket: Path) -> list[str]:
    """Build (when changed) and import every add-on image; the references imported this time."""
    from exchange_devtools.images import load_archive

    imported = []
    for image in addon_images():
        for src in image.files.values():
            if not src.exists():
                raise EngineError(f"{src} is missing; run `bash hack/install/addons.sh` (or `make engines`)")
        if load_archive(build_image(image), image.ref, address=containerd_socket):
            imported.append(image.ref)
    return imported


# --- readiness ----------------------------------------------------------------------------------


def dns_answers(name: str, server: str = DNS_SERVICE_IP, timeout: float = 1.0) -> bool:
    """True when `server` answers an A query for `name` with at least one address."""
    query = struct.pack(">HHHHHH", 0x4558, 0x0100, 1, 0, 0, 0)
    query += b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    query += struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(query, (server, 53))
            reply = sock.recv(512)
        except OSError:
            return False
    rcode, answers = reply[3] & 0x0F, struct.unpack(">H", reply[6:8])[0]
    return reply[:2] == query[:2] and rcode == 0 and answers > 0


def ingress_answers(port: int = INGRESS_PORT) -> bool:
    """True when the ingress controller answers HTTP on 127.0.0.1 (any status: 404 means no route yet)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


def wait_for(what: str, probe: object, timeout: float) -> float:
    """Poll `probe()` every 0.2 s; seconds it took, or EngineError naming `what`."""
    assert callable(probe)
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if probe():
            return time.monotonic() - started
        time.sleep(0.2)
    raise EngineError(f"{what} not ready after {timeout:.0f}s")


def apply(kubectl: list[str], manifest: str) -> None:
    out = subprocess.run(
        [*kubectl, "apply", "--server-side", "--force-conflicts", "--field-manager=exchange-kube-up", "-f", "-"],
        input=manifest,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise EngineError(f"kubectl apply of the node add-ons failed: {(out.stderr or out.stdout).strip()[-400:]}")
