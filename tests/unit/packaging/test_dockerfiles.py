"""The Dockerfiles: multi-stage, pinned bases, non-root, read-only-root friendly, lean contexts.

No Docker engine exists here, so these read the files; tests/e2e/kind builds them for real.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
DOCKERFILES = [REPO / "Dockerfile", REPO / "operator" / "Dockerfile"]


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def build_args(path: Path) -> dict[str, str]:
    args = {}
    for word, rest in instructions(path):
        if word == "ARG" and "=" in rest:
            key, _, value = rest.partition("=")
            args[key] = value
    return args


def base_images(path: Path) -> list[str]:
    args = build_args(path)
    images = []
    for word, rest in instructions(path):
        if word == "FROM":
            image = rest.split()[0]
            images.append(re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image))
    return images


@pytest.fixture(params=DOCKERFILES, ids=lambda p: p.relative_to(REPO).as_posix())
def dockerfile(request) -> Path:
    return request.param


def test_dockerfile_is_multi_stage(dockerfile: Path):
    froms = [rest for word, rest in instructions(dockerfile) if word == "FROM"]
    assert len(froms) >= 2
    assert any(" AS builder" in rest for rest in froms)
    copies_from_builder = [
        rest for word, rest in instructions(dockerfile) if word == "COPY" and "--from=builder" in rest
    ]
    assert copies_from_builder, "the runtime stage must take the built venv from the builder"


def test_base_images_are_pinned_slim_python_3_11(dockerfile: Path):
    for image in base_images(dockerfile):
        name, _, tag = image.partition(":")
        assert name == "python", image
        assert tag and tag != "latest", f"{image}: pin a tag, never latest"
        assert re.match(r"3\.11\.\d+-slim", tag), f"{image}: want a patch-pinned 3.11 slim tag"


def test_the_final_stage_runs_as_uid_10001(dockerfile: Path):
    steps = instructions(dockerfile)
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    users = [rest for word, rest in steps[last_from:] if word == "USER"]
    assert users, "the runtime stage must switch user"
    assert users[-1].split(":")[0] == "10001", "numeric UID, so the kubelet can verify runAsNonRoot"


def test_dependencies_are_installed_hash_checked(dockerfile: Path):
    runs = " ".join(rest for word, rest in instructions(dockerfile) if word == "RUN")
    assert "--require-hashes" in runs
    assert "requirements.lock" in runs


def test_nothing_writes_outside_tmp_at_run_time(dockerfile: Path):
    env = " ".join(rest for word, rest in instructions(dockerfile) if word == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "HOME=/tmp" in env
    assert "TMPDIR=/tmp" in env


def test_no_remote_add(dockerfile: Path):
    for word, rest in instructions(dockerfile):
        assert word != "ADD", f"use COPY, not ADD {rest}"


def test_the_services_image_runs_the_exchange_cli():
    steps = dict(instructions(REPO / "Dockerfile"))
    assert steps["ENTRYPOINT"] == '["exchange"]'


def test_the_operator_image_runs_the_operator_with_kopf_liveness():
    steps = dict(instructions(REPO / "operator" / "Dockerfile"))
    assert steps["ENTRYPOINT"] == '["python", "-m", "exchange_operator"]'
    assert "EXCHANGE_OPERATOR_LIVENESS=http://0.0.0.0:8080/healthz" in steps["ENV"]


def dockerignore_allows(path: str) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes. Directory patterns cover children."""
    allowed = True
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        glob = pattern.replace("**/", "*")
        if any(fnmatch.fnmatch(prefix, glob) for prefix in prefixes):
            allowed = negate
    return allowed


def test_every_copied_path_exists_and_is_in_the_build_context(dockerfile: Path):
    for word, rest in instructions(dockerfile):
        if word != "COPY" or "--from=" in rest:
            continue
        sources = [arg for arg in shlex.split(rest) if not arg.startswith("--")][:-1]
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source}: not in the repository"
            assert dockerignore_allows(source.rstrip("/")), f"COPY {source}: excluded by .dockerignore"


def test_dockerignore_keeps_secrets_and_caches_out():
    for path in [".git/config", ".venv/bin/python", ".dev/kubeconfig", "tests/unit/x.py", "docs/README.md"]:
        assert not dockerignore_allows(path), path
    assert not dockerignore_allows("services/exchange/__pycache__")
