"""`python -m exchange_devtools images`: every image the platform needs, built without Docker.

No registry and no Docker daemon: the bases are Debian rootfs trees from `mmdebstrap`, the images
are built by `buildah` (chroot isolation, storage in `$EXCHANGE_CACHE/buildah`), written as OCI
archives with their full reference inside, and imported into the local node's containerd
(namespace `k8s.io`) with `ctr`.

    localhost/exchange-debian:bookworm        mmdebstrap minbase + ca-certificates (not loaded)
    localhost/exchange-python:3.11-bookworm   hack/images/python: Debian's 3.11, a venv on PATH
    localhost/exchange-python-build:3.11-bookworm
                                              hack/images/python-build: the same + the host's CA
                                              bundle, for the builder stages only (not loaded)
    localhost/exchange:dev                    Dockerfile, target services
    localhost/exchange-operator:dev           Dockerfile, target operator
    localhost/exchange-jre:17-bookworm        hack/images/jre: openjdk-17-jre-headless (not loaded)
    localhost/postgres:15-bookworm            hack/images/postgres
    localhost/postgres-exporter:v0.17.1       hack/images/postgres-exporter (hack/install/postgres_exporter.sh)
    localhost/kafka:4.1.1                     hack/images/kafka (jars and the JMX exporter agent from
                                              hack/install/kafka.sh; metrics on :9308)
    localhost/s3proxy:3.0.0                   hack/images/s3proxy (jar from hack/install/s3.sh)

Caching, by content: an image's key is the SHA-256 of its Dockerfile, every file of its build
context (for the repository root: what .dockerignore lets through), its build arguments and the
image ids of its bases. An unchanged key with the image still in buildah's storage and its
archive on disk means nothing is built; when a key changes, buildah's `--layers` cache still
skips the unchanged steps. The Debian rootfs is rebuilt only when its recipe (mmdebstrap options,
packages, mirrors) changes. An archive is imported only when containerd does not already hold
its reference at the archive's manifest digest.

`rootfs_image` and `load_archive` are also the node's way (`make kube-up`) to make and load its
own one-layer add-on images.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exchange_devtools.engines.base import BIN_DIR, CACHE_DIR, REPO_ROOT, EngineError
from exchange_devtools.engines.kafka import JMX_EXPORTER_CONFIG, JMX_EXPORTER_HOME, JMX_EXPORTER_VERSION

IMAGES_DIR = CACHE_DIR / "images"
ARCHIVE_DIR = IMAGES_DIR / "archives"
STAMP_DIR = IMAGES_DIR / "stamps"
CONTEXT_DIR = IMAGES_DIR / "contexts"
LOG_DIR = IMAGES_DIR / "logs"
ROOTFS_DIR = IMAGES_DIR / "rootfs"
FILE_HASHES = IMAGES_DIR / "file-hashes.json"
BUILDAH_DIR = CACHE_DIR / "buildah"
DEFAULT_ADDRESS = REPO_ROOT / ".dev" / "kube" / "run" / "containerd.sock"
NAMESPACE = "k8s.io"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
KAFKA_VERSION = "4.1.1"  # keep equal to hack/install/kafka.sh
S3PROXY_VERSION = "3.0.0"  # keep equal to hack/install/s3.sh
PG_EXPORTER_VERSION = "v0.17.1"  # keep equal to hack/install/postgres_exporter.sh
NODE_INSTALLER = "bash hack/install/node.sh"
NOT_RUNNING = "the local node is not running: run `make kube-up` first"
# Bump to rebuild every image (a change in how this module builds them).
KEY_VERSION = "1"

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# ---- the Debian base (mmdebstrap) --------------------------------------------------------------------
DEBIAN_SUITE = "bookworm"
DEBIAN_SUITES = (DEBIAN_SUITE, f"{DEBIAN_SUITE}-updates", f"{DEBIAN_SUITE}-security")
DEBIAN_INCLUDE = ("ca-certificates",)
MMDEBSTRAP_OPTIONS = (
    "--variant=minbase",
    # Merged /usr by symlinks, as debootstrap does: without it bookworm pulls in usrmerge and perl.
    "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
    # No device nodes in the layer: every runtime mounts its own /dev.
    "--skip=output/dev",
    # These stay in the image (/etc/apt/apt.conf.d, /etc/dpkg/dpkg.cfg.d), so later apt-get installs
    # in the Dockerfiles are just as lean. dpkg's globs know no braces: one pattern per directory.
    '--aptopt=APT::Install-Recommends "false"',
    '--aptopt=Acquire::Languages "none"',
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    "--dpkgopt=path-exclude=/usr/share/info/*",
)


def debian_sources(apt_dir: Path = Path("/etc/apt")) -> list[str]:
    """One-line `deb URI SUITE main` entries for the bookworm suites this host's apt already uses.

    Read from sources.list and sources.list.d (*.list one-line and *.sources deb822 files), so no
    mirror is written into the repository: the image uses whatever mirror the machine uses.
    """
    entries: list[tuple[str, str]] = []
    files = [apt_dir / "sources.list"]
    with contextlib.suppress(FileNotFoundError):
        files += sorted(p for p in (apt_dir / "sources.list.d").iterdir() if p.suffix in (".list", ".sources"))
    for path in files:
        try:
            text = path.read_text()
        except (FileNotFoundError, PermissionError, IsADirectoryError):
            continue
        if path.suffix == ".sources":
            entries += _deb822_entries(text)
        else:
            entries += _one_line_entries(text)
    lines: list[str] = []
    for uri, suite in entries:
        line = f"deb {uri.rstrip('/')} {suite} main"
        if suite in DEBIAN_SUITES and line not in lines:
            lines.append(line)
    lines.sort(key=lambda line: DEBIAN_SUITES.index(line.split()[2]))
    return lines


def _one_line_entries(text: str) -> list[tuple[str, str]]:
    out = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        line = re.sub(r"\[[^\]]*\]", " ", line)  # [signed-by=... arch=...]
        words = line.split()
        if len(words) >= 4 and words[0] == "deb" and "main" in words[3:]:
            out.append((words[1], words[2]))
    return out


def _deb822_entries(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for raw in stanza.splitlines():
            if raw.startswith("#"):
                continue
            if raw[:1] in (" ", "\t") and key:
                fields[key] += " " + raw.strip()
            elif ":" in raw:
                key, _, value = raw.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
        if fields.get("enabled", "yes").lower() == "no" or "deb" not in fields.get("types", "").split():
            continue
        if "main" not in fields.get("components", "").split():
            continue
        for uri in fields.get("uris", "").split():
            out.extend((uri, suite) for suite in fields.get("suites", "").split())
    return out


# ---- hashing ------------------------------------------------------------------------------------------


class FileHashes:
    """SHA-256 of files, remembered by (size, mtime, inode) so a warm run reads almost nothing."""

    def __init__(self, path: Path = FILE_HASHES) -> None:
        self.path = path
        self.known: dict[str, list[Any]] = {}
        with contextlib.suppress(OSError, ValueError):
            self.known = json.loads(path.read_text())
        self.dirty = False

    def digest(self, file: Path) -> str:
        st = file.stat()
        stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
        entry = self.known.get(str(file))
        if entry is not None and entry[:3] == stamp:
            return str(entry[3])
        value = sha256_file(file)
        self.known[str(file)] = [*stamp, value]
        self.dirty = True
        return value

    def save(self) -> None:
        if self.dirty:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.known))
            tmp.replace(self.path)
            self.dirty = False


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _sha256_json(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# ---- .dockerignore -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class IgnoreRule:
    regex: re.Pattern[str]
    negate: bool
    prefix: str
    """What every path the pattern matches starts with (its text before any wildcard), to prune walks."""


def dockerignore_rules(text: str) -> list[IgnoreRule]:
    """Docker's .dockerignore: Go filepath.Match globs plus `**`, `!` re-includes, last match wins."""
    rules = []
    for raw in text.splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = os.path.normpath(pattern.lstrip("!").strip()).lstrip("/")
        literal = re.split(r"[*?\[\\]", pattern, maxsplit=1)[0]
        # Without a wildcard the pattern names one path (and what is under it).
        prefix = literal + "/" if literal == pattern else literal
        rules.append(IgnoreRule(re.compile(_glob_regex(pattern)), negate, prefix))
    return rules


def _glob_regex(pattern: str) -> str:
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
            continue
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out += re.escape(c)
            else:
                body = pattern[i + 1 : end]
                out += "[" + ("^" + body[1:] if body.startswith("^") else body) + "]"
                i = end
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(c)
        i += 1
    return out + r"\Z"


def ignored(path: str, rules: Sequence[IgnoreRule]) -> bool:
    """True when `path` (relative, '/'-separated) is left out of the build context."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for rule in rules:
        if any(rule.regex.match(prefix) for prefix in prefixes):
            result = not rule.negate
    return result


def context_files(root: Path, rules: Sequence[IgnoreRule]) -> list[str]:
    """Files (and symlinks) of a build context, relative and sorted, as .dockerignore leaves them."""
    negations = [rule for rule in rules if rule.negate]

    def may_hold_included(rel_dir: str) -> bool:
        """Whether a `!` pattern could re-include something under an excluded directory."""
        under = rel_dir + "/"
        return any(under.startswith(rule.prefix) or rule.prefix.startswith(under) for rule in negations)

    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        rel = "" if rel == "." else rel
        keep = []
        for name in sorted(dirnames):
            child = f"{rel}/{name}" if rel else name
            if (root / child).is_symlink():
                filenames.append(name)
            elif not ignored(child, rules) or may_hold_included(child):
                keep.append(name)
        dirnames[:] = keep
        for name in filenames:
            child = f"{rel}/{name}" if rel else name
            if not ignored(child, rules):
                found.append(child)
    return sorted(found)


# ---- image specs ----------------------------------------------------------------------------------------


@dataclass
class ImageSpec:
    """One image: a Dockerfile built by buildah, or (dockerfile None) the Debian rootfs."""

    name: str
    ref: str
    dockerfile: Path | None = None
    context: Path | None = None
    """A directory used as is (the repository root, with its .dockerignore), or None: a staged
    context holding `files`."""
    files: Mapping[str, Path] = field(default_factory=dict)
    """Staged context: destination (relative) -> source file or directory."""
    build_args: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None
    """The Dockerfile stage to build (`buildah bud --target`); None: the last stage."""
    bases: tuple[str, ...] = ()
    load: bool = True
    prepare: Callable[[], None] | None = None

    @property
    def archive(self) -> Path:
        return ARCHIVE_DIR / (self.ref.split("/", 1)[-1].replace(":", "_").replace("/", "_") + ".oci.tar")

    @property
    def stamp(self) -> Path:
        return STAMP_DIR / (self.archive.name.removesuffix(".oci.tar") + ".json")


DEBIAN_REF = "localhost/exchange-debian:bookworm"
PYTHON_REF = "localhost/exchange-python:3.11-bookworm"
PYTHON_BUILD_REF = "localhost/exchange-python-build:3.11-bookworm"
JRE_REF = "localhost/exchange-jre:17-bookworm"
IMAGES_SRC = REPO_ROOT / "hack" / "images"


def _installer(script: str, marker: Path) -> Callable[[], None]:
    def prepare() -> None:
        out = subprocess.run(
            ["bash", str(REPO_ROOT / "hack" / "install" / script)], capture_output=True, text=True, check=False
        )
        if out.returncode != 0 or not marker.exists():
            last = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["no output"]
            raise EngineError(f"hack/install/{script} failed: {last[0]}")

    return prepare


def _dir_files(directory: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(directory.iterdir()) if p.is_file() and p.name != "Dockerfile"}


def image_specs() -> list[ImageSpec]:
    """Every image, bases before the images built on them."""
    kafka_home = CACHE_DIR / f"kafka-{KAFKA_VERSION}"
    jmx_agent = JMX_EXPORTER_HOME / f"jmx_prometheus_javaagent-{JMX_EXPORTER_VERSION}.jar"
    pg_exporter = BIN_DIR / "postgres_exporter"
    s3proxy_jar = CACHE_DIR / f"s3proxy-{S3PROXY_VERSION}" / "s3proxy.jar"
    python_args = {"PYTHON_IMAGE": PYTHON_REF, "PYTHON_BUILDER_IMAGE": PYTHON_BUILD_REF}
    return [
        ImageSpec("debian", DEBIAN_REF, load=False),
        ImageSpec(
            "python",
            PYTHON_REF,
            IMAGES_SRC / "python" / "Dockerfile",
            files=_dir_files(IMAGES_SRC / "python"),
            build_args={"DEBIAN_IMAGE": DEBIAN_REF},
            bases=(DEBIAN_REF,),
        ),
        ImageSpec(
            "python-build",
            PYTHON_BUILD_REF,
            IMAGES_SRC / "python-build" / "Dockerfile",
            files={"ca-certificates.crt": HOST_CA_BUNDLE},
            build_args={"PYTHON_IMAGE": PYTHON_REF},
            bases=(PYTHON_REF,),
            load=False,
        ),
        ImageSpec(
            "exchange",
            "localhost/exchange:dev",
            REPO_ROOT / "Dockerfile",
            context=REPO_ROOT,
            build_args=python_args,
            target="services",
            bases=(PYTHON_REF, PYTHON_BUILD_REF),
        ),
        ImageSpec(
            "exchange-operator",
            "localhost/exchange-operator:dev",
            REPO_ROOT / "Dockerfile",
            context=REPO_ROOT,
            build_args=python_args,
            target="operator",
            bases=(PYTHON_REF, PYTHON_BUILD_REF),
        ),
        ImageSpec(
            "jre",
            JRE_REF,
            IMAGES_SRC / "jre" / "Dockerfile",
            files=_dir_files(IMAGES_SRC / "jre"),
            build_args={"DEBIAN_IMAGE": DEBIAN_REF},
            bases=(DEBIAN_REF,),
            load=False,
        ),
        ImageSpec(
            "postgres",
            "localhost/postgres:15-bookworm",
            IMAGES_SRC / "postgres" / "Dockerfile",
            files=_dir_files(IMAGES_SRC / "postgres"),
            build_args={"DEBIAN_IMAGE": DEBIAN_REF},
            bases=(DEBIAN_REF,),
        ),
        ImageSpec(
            "postgres-exporter",
            f"localhost/postgres-exporter:{PG_EXPORTER_VERSION}",
            IMAGES_SRC / "postgres-exporter" / "Dockerfile",
            files={"postgres_exporter": pg_exporter},
            build_args={"DEBIAN_IMAGE": DEBIAN_REF},
            bases=(DEBIAN_REF,),
            prepare=_installer("postgres_exporter.sh", pg_exporter),
        ),
        ImageSpec(
            "kafka",
            f"localhost/kafka:{KAFKA_VERSION}",
            IMAGES_SRC / "kafka" / "Dockerfile",
            files={
                **_dir_files(IMAGES_SRC / "kafka"),
                "libs": kafka_home / "libs",
                "log4j2.properties": REPO_ROOT / "hack" / "engines" / "kafka" / "log4j2.properties",
                "jmx_prometheus_javaagent.jar": jmx_agent,
                "jmx-exporter.yaml": JMX_EXPORTER_CONFIG,
            },
            build_args={"JRE_IMAGE": JRE_REF},
            bases=(JRE_REF,),
            prepare=_installer("kafka.sh", kafka_home / "libs" / f"kafka_2.13-{KAFKA_VERSION}.jar"),
        ),
        ImageSpec(
            "s3proxy",
            f"localhost/s3proxy:{S3PROXY_VERSION}",
            IMAGES_SRC / "s3proxy" / "Dockerfile",
            files={**_dir_files(IMAGES_SRC / "s3proxy"), "s3proxy.jar": s3proxy_jar},
            build_args={"JRE_IMAGE": JRE_REF},
            bases=(JRE_REF,),
            prepare=_installer("s3.sh", s3proxy_jar),
        ),
    ]


def _staged_files(files: Mapping[str, Path]) -> list[tuple[str, Path]]:
    """(relative destination, source file) for every file a staged context holds, sorted."""
    out: list[tuple[str, Path]] = []
    for dest, src in files.items():
        if src.is_dir():
            for dirpath, dirnames, filenames in os.walk(src):
                dirnames.sort()
                rel = os.path.relpath(dirpath, src)
                for name in sorted(filenames):
                    out.append((os.path.normpath(f"{dest}/{rel}/{name}"), Path(dirpath) / name))
        elif src.exists():
            out.append((dest, src))
        else:
            raise EngineError(f"{src} is missing (needed in the build context as {dest})")
    return sorted(out)


def image_key(spec: ImageSpec, base_ids: Mapping[str, str], hashes: FileHashes) -> str:
    """The content key: Dockerfile and target, context files (name, mode, SHA-256), build args, base image ids."""
    if spec.dockerfile is None:
        raise EngineError(f"{spec.name}: no Dockerfile")
    files: list[tuple[str, int, str]] = []
    if spec.context is not None:
        ignore = spec.context / ".dockerignore"
        rules = dockerignore_rules(ignore.read_text()) if ignore.exists() else []
        for rel in context_files(spec.context, rules):
            path = spec.context / rel
            if path.is_symlink():
                files.append((rel, 0o120000, os.readlink(path)))
            else:
                files.append((rel, path.stat().st_mode & 0o777, hashes.digest(path)))
        if ignore.exists():
            files.append((".dockerignore", 0, hashes.digest(ignore)))
    else:
        for rel, src in _staged_files(spec.files):
            files.append((rel, src.stat().st_mode & 0o777, hashes.digest(src)))
    return _sha256_json(
        {
            "version": KEY_VERSION,
            "ref": spec.ref,
            "dockerfile": hashes.digest(spec.dockerfile),
            "files": files,
            "args": dict(sorted(spec.build_args.items())),
            "target": spec.target,
            "bases": {ref: base_ids.get(ref, "") for ref in spec.bases},
        }
    )


def debian_recipe(sources: Sequence[str]) -> dict[str, object]:
    return {
        "version": KEY_VERSION,
        "suite": DEBIAN_SUITE,
        "include": list(DEBIAN_INCLUDE),
        "options": list(MMDEBSTRAP_OPTIONS),
        "sources": list(sources),
    }


# ---- OCI archives ----------------------------------------------------------------------------------------


def _goarch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)


def _image_config(entrypoint: list[str], user: str | None, env: dict[str, str] | None) -> dict[str, Any]:
    merged = {"PATH": DEFAULT_PATH, **(env or {})}
    config: dict[str, Any] = {"Env": [f"{k}={v}" for k, v in merged.items()]}
    if entrypoint:
        config["Entrypoint"] = list(entrypoint)
    if user:
        config["User"] = user
    return config


def _tar_directory(rootfs: Path, out: Path) -> None:
    """A reproducible layer: sorted entries, mtime 0, ownership kept, names without owners."""

    def clean(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.mtime = 0
        info.uname = info.gname = ""
        return info

    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(rootfs):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                path = Path(dirpath) / name
                tar.add(path, arcname=path.relative_to(rootfs).as_posix(), recursive=False, filter=clean)


def _newest_mtime(path: Path) -> float:
    newest = path.lstat().st_mtime
    if path.is_dir() and not path.is_symlink():
        for dirpath, dirnames, filenames in os.walk(path):
            for name in dirnames + filenames:
                with contextlib.suppress(FileNotFoundError):
                    newest = max(newest, os.lstat(os.path.join(dirpath, name)).st_mtime)
    return newest


def _read_member(tar: tarfile.TarFile, name: str) -> bytes:
    member = tar.extractfile(name)
    if member is None:
        raise KeyError(name)
    return member.read()


def archive_manifest_digest(archive: Path) -> tuple[str, str]:
    """(reference, manifest digest) of an OCI archive's single image."""
    with tarfile.open(archive) as tar:
        index = json.loads(_read_member(tar, "index.json"))
    descriptor = index["manifests"][0]
    annotations = descriptor.get("annotations") or {}
    ref = annotations.get(CONTAINERD_NAME) or annotations.get(REF_NAME) or ""
    return str(ref), str(descriptor["digest"])


def _archive_config(archive: Path) -> tuple[str, dict[str, Any]]:
    with tarfile.open(archive) as tar:
        index = json.loads(_read_member(tar, "index.json"))
        descriptor = index["manifests"][0]
        manifest = json.loads(_read_member(tar, "blobs/sha256/" + descriptor["digest"].split(":", 1)[1]))
        config = json.loads(_read_member(tar, "blobs/sha256/" + manifest["config"]["digest"].split(":", 1)[1]))
    ref = (descriptor.get("annotations") or {}).get(REF_NAME, "")
    return str(ref), dict(config.get("config") or {})


def rootfs_image(
    ref: str,
    rootfs: Path,
    out: Path,
    *,
    entrypoint: list[str],
    user: str | None = None,
    env: dict[str, str] | None = None,
) -> Path:
    """Make an OCI archive `out` holding one layer (the directory or .tar `rootfs`) with the full `ref`
    written in; returns out. Skips work when out exists and is newer than its inputs.

    The layer is stored uncompressed; a directory is tarred reproducibly (sorted, mtime 0), so the
    same tree gives the same manifest digest and `load_archive` skips it. An empty `entrypoint`
    leaves the config without one; PATH defaults to the usual one unless `env` sets it.
    """
    rootfs, out = Path(rootfs), Path(out)
    config = _image_config(entrypoint, user, env)
    if out.exists() and out.stat().st_mtime >= _newest_mtime(rootfs):
        with contextlib.suppress(Exception):
            if _archive_config(out) == (ref, config):
                return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".rootfs-image.") as work:
        if rootfs.is_dir():
            layer = Path(work) / "layer.tar"
            _tar_directory(rootfs, layer)
        elif rootfs.is_file():
            layer = rootfs
        else:
            raise EngineError(f"rootfs_image: {rootfs} is neither a directory nor a tar file")
        layer_digest = "sha256:" + sha256_file(layer)
        image_config = {
            "created": "1970-01-01T00:00:00Z",
            "architecture": _goarch(),
            "os": "linux",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
            "history": [{"created": "1970-01-01T00:00:00Z", "created_by": f"exchange_devtools.images {ref}"}],
        }
        config_blob = json.dumps(image_config, sort_keys=True).encode()
        manifest_blob = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": _digest(config_blob), "size": len(config_blob)},
                "layers": [{"mediaType": OCI_LAYER_TAR, "digest": layer_digest, "size": layer.stat().st_size}],
            },
            sort_keys=True,
        ).encode()
        index_blob = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [
                    {
                        "mediaType": OCI_MANIFEST,
                        "digest": _digest(manifest_blob),
                        "size": len(manifest_blob),
                        "platform": {"architecture": _goarch(), "os": "linux"},
                        "annotations": {REF_NAME: ref, CONTAINERD_NAME: ref},
                    }
                ],
            },
            sort_keys=True,
        ).encode()
        tmp = Path(work) / "image.tar"
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
            _add_bytes(tar, "index.json", index_blob)
            _add_dir(tar, "blobs")
            _add_dir(tar, "blobs/sha256")
            _add_bytes(tar, "blobs/sha256/" + _digest(manifest_blob)[7:], manifest_blob)
            _add_bytes(tar, "blobs/sha256/" + _digest(config_blob)[7:], config_blob)
            info = tarfile.TarInfo("blobs/sha256/" + layer_digest[7:])
            info.size, info.mode = layer.stat().st_size, 0o644
            with open(layer, "rb") as f:
                tar.addfile(info, f)
        tmp.replace(out)
    return out


def _digest(blob: bytes) -> str:
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    tar.addfile(info)


# ---- containerd ----------------------------------------------------------------------------------------------


def _ctr() -> Path:
    ctr = BIN_DIR / "ctr"
    if not ctr.exists():
        raise EngineError(f"{ctr} is missing; run `{NODE_INSTALLER}`")
    return ctr


def _check_socket(address: Path) -> None:
    if not address.is_socket():
        raise EngineError(NOT_RUNNING)


def containerd_images(address: Path) -> dict[str, str]:
    """Reference -> target digest of every image in containerd's k8s.io namespace."""
    _check_socket(address)
    out = subprocess.run(
        [str(_ctr()), "--address", str(address.absolute()), "--namespace", NAMESPACE, "images", "ls"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if out.returncode != 0:
        if not address.is_socket() or "connect" in out.stderr:
            raise EngineError(NOT_RUNNING)
        raise EngineError(f"ctr images ls: exit {out.returncode}: {_last_line(out.stderr)}")
    images = {}
    for line in out.stdout.splitlines()[1:]:
        words = line.split()
        if len(words) >= 3 and words[2].startswith("sha256:"):
            images[words[0]] = words[2]
    return images


def load_archive(archive: Path, ref: str, *, address: Path) -> bool:
    """Import into containerd's k8s.io namespace unless `ref` already points at the archive's
    manifest digest; True when it imported."""
    archive_ref, digest = archive_manifest_digest(archive)
    if archive_ref != ref:
        raise EngineError(f"{archive} names {archive_ref or 'no image'}, not {ref}")
    if containerd_images(address).get(ref) == digest:
        return False
    _import(archive, address)
    if containerd_images(address).get(ref) != digest:
        raise EngineError(f"ctr imported {archive} but {ref} does not point at {digest}")
    return True


def _import(archive: Path, address: Path) -> None:
    # The full reference is inside the archive: no --base-name or --index-name, which would add names.
    out = subprocess.run(
        [str(_ctr()), "--address", str(address.absolute()), "--namespace", NAMESPACE, "images", "import", str(archive)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if out.returncode != 0:
        raise EngineError(f"ctr images import {archive.name}: exit {out.returncode}: {_last_line(out.stderr)}")


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no output"


# ---- buildah -----------------------------------------------------------------------------------------------


class Buildah:
    """buildah with its own storage under $EXCHANGE_CACHE/buildah (no system store touched)."""

    def __init__(self, root: Path = BUILDAH_DIR) -> None:
        exe = shutil.which("buildah")
        if exe is None:
            raise EngineError(f"buildah is missing; run `{NODE_INSTALLER}`")
        self.root = root
        driver = os.environ.get("EXCHANGE_BUILDAH_DRIVER", "overlay")
        self.argv = [exe, "--root", str(root / "root"), "--runroot", str(root / "run"), "--storage-driver", driver]
        self.env = {**os.environ, "TMPDIR": str(root / "tmp"), "BUILDAH_ISOLATION": "chroot"}
        (root / "tmp").mkdir(parents=True, exist_ok=True)

    def run(self, *args: str, log: Path | None = None, what: str = "buildah", timeout: float = 3600) -> str:
        argv = [*self.argv, *args]
        if log is None:
            out = subprocess.run(argv, capture_output=True, text=True, check=False, env=self.env, timeout=timeout)
            if out.returncode != 0:
                raise EngineError(f"{what}: exit {out.returncode}: {_last_line(out.stderr or out.stdout)}")
            return out.stdout
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as f:
            f.write(f"\n$ {' '.join(argv)}\n".encode())
            f.flush()
            proc = subprocess.run(
                argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env, timeout=timeout
            )
        if proc.returncode != 0:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise EngineError(f"{what}: exit {proc.returncode}: {tail[0].strip()} (log: {log})")
        return ""

    def images(self) -> dict[str, str]:
        """Reference -> image id of every named image in this storage."""
        raw = self.run("images", "--json", "--no-trunc", what="buildah images").strip()
        found: dict[str, str] = {}
        for image in json.loads(raw) if raw else []:
            for name in image.get("names") or []:
                found[name] = image["id"]
        return found


# ---- the driver ----------------------------------------------------------------------------------------------


@dataclass
class Result:
    spec: ImageSpec
    status: str
    seconds: float
    size: int
    loaded: str = ""


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit in ("B", "KiB") else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _read_stamp(spec: ImageSpec) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        return dict(json.loads(spec.stamp.read_text()))
    return {}


def _write_stamp(spec: ImageSpec, **values: object) -> None:
    spec.stamp.parent.mkdir(parents=True, exist_ok=True)
    spec.stamp.write_text(json.dumps(values, indent=1) + "\n")


def _stage_context(spec: ImageSpec) -> Path:
    """A fresh directory holding the spec's files (hard links where possible)."""
    context = CONTEXT_DIR / spec.name
    shutil.rmtree(context, ignore_errors=True)
    for rel, src in _staged_files(spec.files):
        dest = context / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dest)
        except OSError:
            shutil.copy2(src, dest)
    context.mkdir(parents=True, exist_ok=True)
    return context


def _push(buildah: Buildah, spec: ImageSpec, log: Path) -> None:
    spec.archive.parent.mkdir(parents=True, exist_ok=True)
    tmp = spec.archive.with_name(spec.archive.name + ".tmp")
    tmp.unlink(missing_ok=True)
    # The full reference goes into the archive (its index's ref.name): `ctr images import` then names
    # the image exactly, with no --base-name or --index-name and no dangling import-<date> name.
    buildah.run(
        "push", "--quiet", "--format", "oci", spec.ref, f"oci-archive:{tmp}:{spec.ref}",
        log=log, what=f"{spec.ref}: buildah push",
    )  # fmt: skip
    tmp.replace(spec.archive)


def build_debian(buildah: Buildah, spec: ImageSpec, images: Mapping[str, str]) -> bool:
    """The Debian base from mmdebstrap; True when it was (re)built."""
    sources = debian_sources()
    if not sources:
        raise EngineError("no Debian bookworm entry in /etc/apt/sources.list(.d); the base needs a mirror")
    key = _sha256_json(debian_recipe(sources))
    stamp = _read_stamp(spec)
    image_id = images.get(spec.ref)
    if stamp.get("key") == key and image_id and stamp.get("image_id") == image_id and spec.archive.exists():
        return False
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        raise EngineError(f"mmdebstrap is missing; run `{NODE_INSTALLER}`")
    log = LOG_DIR / f"{spec.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    ROOTFS_DIR.mkdir(parents=True, exist_ok=True)
    rootfs = ROOTFS_DIR / f"debian-{DEBIAN_SUITE}.tar"
    if stamp.get("key") != key or not rootfs.exists():
        tmp = rootfs.with_name(f".debian-{DEBIAN_SUITE}.tmp.tar")  # mmdebstrap picks the format by extension
        argv = [
            mmdebstrap,
            *MMDEBSTRAP_OPTIONS,
            f"--include={','.join(DEBIAN_INCLUDE)}",
            DEBIAN_SUITE,
            str(tmp),
            *sources,
        ]
        with open(log, "ab") as f:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT, check=False)
        if proc.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise EngineError(f"mmdebstrap exit {proc.returncode}: {_last_line(log.read_text(errors='replace'))}")
        tmp.replace(rootfs)
    rootfs_image(spec.ref, rootfs, spec.archive, entrypoint=[], env={"LANG": "C.UTF-8"})
    buildah.run("pull", "--quiet", f"oci-archive:{spec.archive}", log=log, what=f"{spec.ref}: buildah pull")
    # `buildah pull` of an archive may name the image after the archive; give it its reference.
    buildah.run("tag", _image_id_of_archive(buildah, spec), spec.ref, what=f"{spec.ref}: buildah tag")
    _write_stamp(spec, key=key, image_id=buildah.images()[spec.ref], recipe=debian_recipe(sources))
    return True


def _image_id_of_archive(buildah: Buildah, spec: ImageSpec) -> str:
    _, digest = archive_manifest_digest(spec.archive)
    raw = buildah.run("images", "--json", "--no-trunc", what="buildah images")
    for image in json.loads(raw or "[]"):
        if image.get("digest") == digest or digest in (image.get("digests") or []):
            return str(image["id"])
    raise EngineError(f"{spec.ref}: pulled {spec.archive.name} but buildah does not list it")


def build_image(
    buildah: Buildah, spec: ImageSpec, images: Mapping[str, str], hashes: FileHashes
) -> tuple[bool, dict[str, str]]:
    """Build one Dockerfile image unless its key is unchanged; (built, refreshed image table)."""
    if spec.prepare is not None:
        spec.prepare()
    key = image_key(spec, images, hashes)
    stamp = _read_stamp(spec)
    image_id = images.get(spec.ref)
    if stamp.get("key") == key and image_id and stamp.get("image_id") == image_id and spec.archive.exists():
        return False, dict(images)
    assert spec.dockerfile is not None
    log = LOG_DIR / f"{spec.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    context = spec.context if spec.context is not None else _stage_context(spec)
    args = [f"--build-arg={k}={v}" for k, v in sorted(spec.build_args.items())]
    if spec.target is not None:
        args.append(f"--target={spec.target}")
    buildah.run(
        "bud", "--isolation", "chroot", "--layers", "--pull=never", "--disable-compression",
        "--format", "oci", *args, "--file", str(spec.dockerfile), "--tag", spec.ref, str(context),
        log=log, what=f"{spec.ref}: buildah bud",
    )  # fmt: skip
    images = buildah.images()
    _push(buildah, spec, log)
    _write_stamp(spec, key=key, image_id=images[spec.ref])
    if spec.context is None:
        shutil.rmtree(CONTEXT_DIR / spec.name, ignore_errors=True)
    return True, images


def select(specs: Sequence[ImageSpec], names: Iterable[str]) -> list[ImageSpec]:
    """The named images and every base they need, in build order."""
    wanted = list(names)
    if not wanted:
        return list(specs)
    by_ref = {spec.ref: spec for spec in specs}
    by_name = {spec.name: spec for spec in specs} | by_ref
    unknown = [name for name in wanted if name not in by_name]
    if unknown:
        raise EngineError(f"unknown image {unknown[0]!r}; known: {', '.join(spec.name for spec in specs)}")
    chosen: set[str] = set()

    def add(spec: ImageSpec) -> None:
        if spec.ref not in chosen:
            chosen.add(spec.ref)
            for base in spec.bases:
                add(by_ref[base])

    for name in wanted:
        add(by_name[name])
    return [spec for spec in specs if spec.ref in chosen]


def build_all(
    names: Sequence[str] = (),
    *,
    address: Path | None = None,
    out: Callable[[str], None] = print,
) -> list[Result]:
    """Build (or reuse) the images, then import the loadable ones when `address` is given."""
    started = time.monotonic()
    if address is not None:
        _check_socket(address)
        _ctr()
    specs = select(image_specs(), names)
    buildah = Buildah()
    hashes = FileHashes()
    images = buildah.images()
    in_containerd = containerd_images(address) if address is not None else {}
    results = []
    for spec in specs:
        t0 = time.monotonic()
        try:
            if spec.dockerfile is None:
                built = build_debian(buildah, spec, images)
                if built:
                    images = buildah.images()
            else:
                built, images = build_image(buildah, spec, images, hashes)
        finally:
            hashes.save()
        loaded = ""
        if address is not None and spec.load:
            _, digest = archive_manifest_digest(spec.archive)
            if in_containerd.get(spec.ref) == digest:
                loaded = "in containerd"
            else:
                _import(spec.archive, address)
                in_containerd = containerd_images(address)
                if in_containerd.get(spec.ref) != digest:
                    raise EngineError(f"ctr imported {spec.archive.name} but {spec.ref} is not at {digest}")
                loaded = "imported"
        result = Result(spec, "built" if built else "cached", time.monotonic() - t0, spec.archive.stat().st_size)
        result.loaded = loaded
        results.append(result)
        out(
            f"{spec.ref:<48} {result.status:<6} {_human(result.size):>10} {result.seconds:7.1f} s"
            + (f"  {loaded}" if loaded else "")
        )
    built_count = sum(r.status == "built" for r in results)
    imported = sum(r.loaded == "imported" for r in results)
    out(
        f"{'total':<48} {built_count} built, {len(results) - built_count} cached, {imported} imported"
        f" in {time.monotonic() - started:.1f} s"
    )
    return results


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m exchange_devtools images",
        description="Build every image with buildah and import it into the local node's containerd.",
    )
    parser.add_argument("names", nargs="*", help="only these images (and their bases); default: all")
    parser.add_argument("--no-load", action="store_true", help="build the OCI archives only")
    parser.add_argument(
        "--address",
        type=Path,
        default=Path(os.environ.get("CONTAINERD_ADDRESS") or DEFAULT_ADDRESS),
        help="containerd socket (default: $CONTAINERD_ADDRESS or .dev/kube/run/containerd.sock)",
    )
    args = parser.parse_args(argv)
    address = None if args.no_load else args.address.resolve()
    if address is not None:
        _check_socket(address)  # before waiting for the lock or building anything
    IMAGES_DIR.mkdir(parents=True, exist_ok=True)
    with open(IMAGES_DIR / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            sys.stderr.write(f"waiting for another `images` run ({IMAGES_DIR / '.lock'})\n")
            fcntl.flock(lock, fcntl.LOCK_EX)
        build_all(args.names, address=address)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
