"""The Dockerfile: one file, two targets (services, operator) sharing the builder and the runtime base;
pinned bases, non-root, read-only-root friendly, a lean context.

No Docker engine exists here, so these read the file; tests/e2e/kind builds both targets for real.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
DOCKERFILE = REPO / "Dockerfile"
TARGETS = ("services", "operator")


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
    """The external images the stages start from (stages built on other stages left out)."""
    args = build_args(path)
    images = []
    stages = set()
    for word, rest in instructions(path):
        if word == "FROM":
            image, *alias = rest.split()
            if image not in stages:
                images.append(re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image))
            if alias:
                stages.add(alias[-1])
    return images


def stages(path: Path) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """Stage name -> (what it is FROM, its instructions)."""
    out: dict[str, tuple[str, list[tuple[str, str]]]] = {}
    current: list[tuple[str, str]] = []
    for word, rest in instructions(path):
        if word == "FROM":
            base, *alias = rest.split()
            current = []
            out[alias[-1] if alias else base] = (base, current)
        elif out:
            current.append((word, rest))
    return out


def target_steps(target: str) -> list[tuple[str, str]]:
    """A target's instructions with the stages it is built FROM (its runtime base) in front."""
    all_stages = stages(DOCKERFILE)
    base, steps = all_stages[target]
    return (target_steps(base) if base in all_stages else []) + steps


@pytest.fixture
def dockerfile() -> Path:
    return DOCKERFILE


def test_there_is_one_dockerfile():
    assert DOCKERFILE.exists()
    assert not (REPO / "operator" / "Dockerfile").exists(), "both images are targets of the root Dockerfile"


def test_both_targets_share_the_builder_and_the_runtime_base():
    all_stages = stages(DOCKERFILE)
    assert all_stages["services-venv"][0] == "builder"
    assert all_stages["operator-venv"][0] == "builder"
    for target in TARGETS:
        assert all_stages[target][0] == "runtime", target
        copies = [rest for word, rest in all_stages[target][1] if word == "COPY" and "--from=" in rest]
        assert copies == [f"--from={target}-venv /opt/venv /opt/venv"], target


def test_each_image_installs_only_its_own_extra():
    all_stages = stages(DOCKERFILE)
    for target in TARGETS:
        runs = " ".join(rest for word, rest in all_stages[f"{target}-venv"][1] if word == "RUN")
        assert f"runtime_lock.py --extra {target} " in runs, target
        other = next(t for t in TARGETS if t != target)
        assert f"--extra {other}" not in runs, target


def test_dockerfile_is_multi_stage(dockerfile: Path):
    froms = [rest for word, rest in instructions(dockerfile) if word == "FROM"]
    assert len(froms) >= 2
    assert any(" AS builder" in rest for rest in froms)


def test_base_images_are_pinned_slim_python_3_11(dockerfile: Path):
    for image in base_images(dockerfile):
        name, _, tag = image.partition(":")
        assert name == "python", image
        assert tag and tag != "latest", f"{image}: pin a tag, never latest"
        assert re.match(r"3\.11\.\d+-slim", tag), f"{image}: want a patch-pinned 3.11 slim tag"


@pytest.mark.parametrize("target", TARGETS)
def test_each_target_runs_as_uid_10001(target: str):
    users = [rest for word, rest in target_steps(target) if word == "USER"]
    assert users, "the runtime stage must switch user"
    assert users[-1].split(":")[0] == "10001", "numeric UID, so the kubelet can verify runAsNonRoot"


def test_the_operator_target_is_built_before_any_stage_that_needs_the_services_code():
    names = list(stages(DOCKERFILE))
    for name in names[: names.index("operator") + 1]:
        copies = " ".join(rest for word, rest in stages(DOCKERFILE)[name][1] if word == "COPY")
        assert "services/" not in copies and "contracts/" not in copies, name


def test_the_default_target_is_the_services_image():
    assert list(stages(DOCKERFILE))[-1] == "services"


def test_dependencies_are_installed_hash_checked(dockerfile: Path):
    runs = " ".join(rest for word, rest in instructions(dockerfile) if word == "RUN")
    assert "--require-hashes" in runs
    assert "requirements.lock" in runs


@pytest.mark.parametrize("target", TARGETS)
def test_nothing_writes_outside_tmp_at_run_time(target: str):
    env = " ".join(rest for word, rest in target_steps(target) if word == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "HOME=/tmp" in env
    assert "TMPDIR=/tmp" in env


def test_no_remote_add(dockerfile: Path):
    for word, rest in instructions(dockerfile):
        assert word != "ADD", f"use COPY, not ADD {rest}"


def test_the_services_image_runs_the_exchange_cli():
    steps = dict(target_steps("services"))
    assert steps["ENTRYPOINT"] == '["exchange"]'


def test_the_operator_image_runs_the_operator_with_kopf_liveness():
    steps = target_steps("operator")
    assert dict(steps)["ENTRYPOINT"] == '["python", "-m", "exchange_operator"]'
    env = " ".join(rest for word, rest in steps if word == "ENV")
    assert "EXCHANGE_OPERATOR_LIVENESS=http://0.0.0.0:8080/healthz" in env
    assert "PYTHONPATH=/app/operator" in env
    copies = " ".join(rest for word, rest in steps if word == "COPY")
    assert "services/" not in copies and "contracts/" not in copies, "the operator image carries no services code"


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
