"""hack/docker/runtime_lock.py: each image gets its own closure of requirements.lock, hashes kept."""

from __future__ import annotations

import ast
import importlib.metadata
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

EXTRAS_PYPROJECT = """
[project]
name = "demo"
dependencies = ["anyio"]
[project.optional-dependencies]
web = ["web-framework>=1"]
ops = ["kopf"]
dev = ["demo[web,ops]", "pytest"]
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


def test_an_extra_adds_its_roots_to_the_base(runtime_lock):
    def names(*extras: str) -> list[str]:
        return [block.name for block in runtime_lock.runtime_subset(EXTRAS_PYPROJECT, SMALL_LOCK, extras)]

    assert names() == ["anyio", "sniffio"]
    assert names("web") == ["anyio", "sniffio", "web-framework"]
    assert names("ops") == ["anyio", "kopf", "sniffio"]
    # The project's own `demo[web,ops]` pulls both extras in.
    assert names("dev") == ["anyio", "iniconfig", "kopf", "pytest", "sniffio", "web-framework"]


def test_an_unknown_extra_is_one_line_and_a_non_zero_exit(runtime_lock, tmp_path, capsys):
    (tmp_path / "pyproject.toml").write_text(EXTRAS_PYPROJECT)
    (tmp_path / "requirements.lock").write_text(SMALL_LOCK)
    argv = ["runtime_lock.py", "--extra", "nope", str(tmp_path / "pyproject.toml"), str(tmp_path / "requirements.lock")]
    assert runtime_lock.main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no extra 'nope'" in err


DEV_TOOLS = {"pytest", "ruff", "mypy", "hypothesis", "schemathesis", "faker", "import-linter", "hatchling"}
SERVICES_ONLY = {"strawberry-graphql", "aiokafka", "asyncpg", "aiobotocore", "fastapi", "uvicorn", "alembic"}
OPERATOR_ONLY = {"kopf"}
DEV_KUBE_CLIENTS = {"kubernetes", "lightkube"}  # tests and benchmarks only: the operator writes with kopf's login


def real_closure(runtime_lock, extra: str) -> set[str]:
    blocks = runtime_lock.runtime_subset(
        (REPO / "pyproject.toml").read_text(), (REPO / "requirements.lock").read_text(), [extra]
    )
    for block in blocks:
        assert any("--hash=sha256:" in line for line in block.lines), f"{block.name} has no hash"
    return {block.name for block in blocks}


def test_the_operator_image_gets_kopf_and_none_of_the_services_dependencies(runtime_lock):
    names = real_closure(runtime_lock, "operator")
    assert {"kopf", "pydantic", "prometheus-client", "pyyaml", "aiohttp"} <= names
    assert not names & (SERVICES_ONLY | DEV_TOOLS | DEV_KUBE_CLIENTS)


def test_the_services_image_gets_the_services_and_neither_kopf_nor_the_kubernetes_client(runtime_lock):
    names = real_closure(runtime_lock, "services")
    assert {"fastapi", "uvicorn", "asyncpg", "aiokafka", "aiobotocore", "strawberry-graphql", "pydantic"} <= names
    assert not names & (OPERATOR_ONLY | DEV_TOOLS | DEV_KUBE_CLIENTS)


def third_party_imports(package: Path) -> set[str]:
    """Top-level names of every module imported anywhere in `package` (lazy imports too), stdlib and
    first-party left out."""
    first_party = {"exchange", "exchange_operator"}
    found: set[str] = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - first_party - {"__future__"}


@pytest.mark.parametrize(
    ("extra", "package"),
    [("operator", REPO / "operator" / "exchange_operator"), ("services", REPO / "services" / "exchange")],
)
def test_every_module_an_image_imports_comes_from_its_own_closure(runtime_lock, extra: str, package: Path):
    names = real_closure(runtime_lock, extra)
    distributions = importlib.metadata.packages_distributions()
    imports = third_party_imports(package)
    assert imports, package
    for module in sorted(imports):
        providers = {runtime_lock.normalize(dist) for dist in distributions.get(module, [])}
        assert providers, f"{module}: no installed distribution provides it"
        assert providers & names, f"{package.name} imports {module} ({sorted(providers)}), not in the {extra} set"
