"""hack/docker/runtime_lock.py: the images get the runtime closure of requirements.lock, hashes kept."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def runtime_lock():
    spec = importlib.util.spec_from_file_location("runtime_lock", REPO / "hack" / "docker" / "runtime_lock.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["runtime_lock"] = module
    spec.loader.exec_module(module)
    return module


SMALL_PYPROJECT = """
[project]
name = "demo"
dependencies = ["Web_Framework[extra]>=1", "kopf"]
[project.optional-dependencies]
dev = ["pytest"]
"""

SMALL_LOCK = """\
anyio==4.0 \\
    --hash=sha256:aa
    # via web-framework
iniconfig==2.0 \\
    --hash=sha256:bb
    # via pytest
kopf==1.0 \\
    --hash=sha256:cc
    # via demo (pyproject.toml)
pytest==8.0 \\
    --hash=sha256:dd
    # via demo (pyproject.toml)
sniffio==1.0 ; sys_platform != 'win32' \\
    --hash=sha256:ee
    # via
    #   anyio
    #   pytest
web-framework==1.0 \\
    --hash=sha256:ff \\
    --hash=sha256:00
    # via demo (pyproject.toml)
"""


def test_the_runtime_closure_follows_via_annotations_and_drops_dev_only_packages(runtime_lock):
    names = [block.name for block in runtime_lock.runtime_subset(SMALL_PYPROJECT, SMALL_LOCK)]
    assert names == ["anyio", "kopf", "sniffio", "web-framework"]


def test_blocks_keep_pins_markers_and_every_hash(runtime_lock):
    blocks = {b.name: b for b in runtime_lock.runtime_subset(SMALL_PYPROJECT, SMALL_LOCK)}
    assert blocks["sniffio"].lines[0].startswith("sniffio==1.0 ; sys_platform != 'win32'")
    assert [line.strip() for line in blocks["web-framework"].lines[1:]] == [
        "--hash=sha256:ff \\",
        "--hash=sha256:00",
    ]


def test_a_dependency_missing_from_the_lock_is_an_error(runtime_lock):
    with pytest.raises(KeyError, match="make lock"):
        runtime_lock.runtime_subset(SMALL_PYPROJECT.replace('"kopf"', '"kopf", "missing-pkg"'), SMALL_LOCK)


def test_the_real_lock_gives_the_services_and_the_operator_everything_and_no_dev_tools(runtime_lock):
    blocks = runtime_lock.runtime_subset(
        (REPO / "pyproject.toml").read_text(), (REPO / "requirements.lock").read_text()
    )
    names = {block.name for block in blocks}
    assert {"fastapi", "uvicorn", "kopf", "kubernetes", "asyncpg", "aiokafka", "pydantic"} <= names
    assert not names & {"pytest", "ruff", "mypy", "hypothesis", "schemathesis", "faker", "import-linter"}
    for block in blocks:
        assert any("--hash=sha256:" in line for line in block.lines), f"{block.name} has no hash"
