"""hack/kind-up, hack/kind-down, hack/gen-rbac: strict bash, and one clear line when a tool is missing.

The happy path needs Docker and kind and lives in tests/e2e/kind.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SCRIPTS = [REPO / "hack" / name for name in ("kind-up", "kind-down", "gen-rbac")]
# What lib.sh and the scripts call before they look for docker/kind.
BASICS = ("bash", "dirname", "basename", "mkdir", "cat", "grep")


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_is_strict_executable_bash(script: Path):
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text.splitlines()[:20] or "\nset -euo pipefail\n" in text
    assert os.access(script, os.X_OK)
    subprocess.run(["bash", "-n", str(script)], check=True)


def minimal_path(tmp_path: Path, fake_docker: str | None) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in BASICS:
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    if fake_docker is not None:
        docker = bin_dir / "docker"
        docker.write_text(f"#!/bin/sh\n{fake_docker}\n")
        docker.chmod(0o755)
    return str(bin_dir)


def run_script(name: str, path: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": path, "HOME": str(tmp_path), "EXCHANGE_CACHE": str(tmp_path / "cache")}
    return subprocess.run(
        ["bash", str(REPO / "hack" / name)], env=env, capture_output=True, text=True, timeout=30, check=False
    )


@pytest.mark.parametrize("name", ["kind-up", "kind-down"])
def test_without_docker_the_script_says_so_in_one_line(tmp_path: Path, name: str):
    result = run_script(name, minimal_path(tmp_path, fake_docker=None), tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "docker not found" in result.stderr


def test_kind_up_without_a_docker_engine_says_so_in_one_line(tmp_path: Path):
    result = run_script("kind-up", minimal_path(tmp_path, fake_docker="exit 1"), tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "no Docker engine answers" in result.stderr


@pytest.mark.parametrize("name", ["kind-up", "kind-down"])
def test_without_kind_the_script_says_how_to_get_it(tmp_path: Path, name: str):
    result = run_script(name, minimal_path(tmp_path, fake_docker="exit 0"), tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "kind not found: go install sigs.k8s.io/kind@" in result.stderr
