"""Every YAML file in the repository parses (Helm templates excepted: they are Go templates)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
SKIP_DIRS = {
    ".git",
    ".venv",
    ".dev",
    "node_modules",
    ".pytest_cache",
    ".tox",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
}


def _yaml_files() -> list[Path]:
    found = []
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and d != "templates"]
        found += [Path(root) / name for name in files if name.endswith((".yaml", ".yml"))]
    return sorted(found)


YAML_FILES = _yaml_files()


def test_the_repository_has_yaml_to_check():
    names = {path.relative_to(REPO).as_posix() for path in YAML_FILES}
    assert "charts/exchange-operator/values.yaml" in names
    assert "manifests/samples/minimal.yaml" in names


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_yaml_file_parses(path: Path):
    documents = list(yaml.safe_load_all(path.read_text()))
    assert documents, f"{path} is empty"


KUBERNETES_YAML = [
    path for path in YAML_FILES if path.relative_to(REPO).parts[0] == "manifests" or path.parent.name == "crds"
]


@pytest.mark.parametrize("path", KUBERNETES_YAML, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_kubernetes_manifest_names_its_api_version_kind_and_name(path: Path):
    for document in yaml.safe_load_all(path.read_text()):
        if document is None:
            continue
        assert {"apiVersion", "kind", "metadata"} <= document.keys(), path
        assert document["metadata"].get("name"), path
