"""Published contract versions never change (issue 23, point 2; ADR 0011).

The first test is the guard itself; the others change a copy of contracts/ the ways a careless
edit would and check the guard says so.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from exchange_devtools import contract_versions as cv


def test_every_contract_document_matches_its_published_fingerprint() -> None:
    assert cv.problems() == []


def test_every_contract_document_is_covered() -> None:
    found = {d.path for d in cv.documents()}
    assert {"api/ingest.v1.openapi.yaml", "events/record.ingested.v1.json", "graphql/schema.graphql"} <= found
    assert found == set(cv.load_published())


@pytest.fixture
def copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of contracts/ and docs/adr the guard reads instead of the real ones."""
    shutil.copytree(cv.CONTRACTS, tmp_path / "contracts")
    shutil.copytree(cv.ROOT / "docs" / "adr", tmp_path / "docs" / "adr")
    monkeypatch.setattr(cv, "ROOT", tmp_path)
    monkeypatch.setattr(cv, "CONTRACTS", tmp_path / "contracts")
    monkeypatch.setattr(cv, "PUBLISHED", tmp_path / "contracts" / "published.yaml")
    return tmp_path


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def _published(root: Path) -> dict:
    return yaml.safe_load((root / "contracts" / "published.yaml").read_text())


def _write_published(root: Path, data: dict) -> None:
    (root / "contracts" / "published.yaml").write_text(yaml.safe_dump(data))


def test_formatting_and_comments_do_not_count(copy: Path) -> None:
    _edit(copy / "contracts/api/tokenizer.v1.openapi.yaml", "openapi: 3.1.0\n", "# a comment\nopenapi:   3.1.0\n")
    _edit(copy / "contracts/graphql/schema.graphql", "\ntype ", "\n# a comment\ntype   ")
    assert cv.problems() == []


@pytest.mark.parametrize(
    ("doc", "old", "new"),
    [
        ("api/tokenizer.v1.openapi.yaml", "title: Exchange tokenizer", "title: Exchange tokenizer!"),
        ("events/record.ingested.v1.json", '"additionalProperties": false', '"additionalProperties": true'),
        ("graphql/schema.graphql", '"""The record that stated the fact', '"""The record that asserted the fact'),
    ],
)
def test_a_changed_published_version_fails(copy: Path, doc: str, old: str, new: str) -> None:
    _edit(copy / "contracts" / doc, old, new)
    assert [p for p in cv.problems() if "changed" in p and p.startswith(doc)]


def test_a_new_version_must_be_recorded_then_passes(copy: Path) -> None:
    doc = copy / "contracts/api/tokenizer.v1.openapi.yaml"
    _edit(doc, "version: 1.2.0", "version: 1.3.0")
    assert any("1.3.0" in p and "not in contracts/published.yaml" in p for p in cv.problems())
    data = _published(copy)
    data["documents"]["api/tokenizer.v1.openapi.yaml"].append({"version": "1.3.0", "sha256": cv.read(doc).fingerprint})
    _write_published(copy, data)
    assert cv.problems() == []


def test_a_new_major_needs_a_file_of_its_own(copy: Path) -> None:
    doc = copy / "contracts/api/tokenizer.v1.openapi.yaml"
    _edit(doc, "version: 1.2.0", "version: 2.0.0")
    data = _published(copy)
    data["documents"]["api/tokenizer.v1.openapi.yaml"].append({"version": "2.0.0", "sha256": cv.read(doc).fingerprint})
    _write_published(copy, data)
    assert any("needs a file of its own major" in p for p in cv.problems())


def test_re_recording_a_published_version_fails(copy: Path) -> None:
    doc = copy / "contracts/api/tokenizer.v1.openapi.yaml"
    _edit(doc, "title: Exchange tokenizer", "title: Exchange tokenizer!")
    data = _published(copy)
    adr = "docs/adr/0011-published-contracts-and-idempotency-conflict.md"
    entry = {"version": "1.2.0", "sha256": cv.read(doc).fingerprint, "adr": adr}
    data["documents"]["api/tokenizer.v1.openapi.yaml"].append(entry)
    _write_published(copy, data)
    assert any("listed twice" in p for p in cv.problems())


def _pre_1_0(copy: Path, adr: str) -> None:
    """The tokenizer document as if it were 0.9.0, then changed in place under `adr`."""
    doc = copy / "contracts/api/tokenizer.v1.openapi.yaml"
    _edit(doc, "version: 1.2.0", "version: 0.9.0")
    first = cv.read(doc).fingerprint
    _edit(doc, "title: Exchange tokenizer", "title: Exchange tokenizer!")
    data = _published(copy)
    data["documents"]["api/tokenizer.v1.openapi.yaml"] = [
        {"version": "0.9.0", "sha256": first},
        {"version": "0.9.0", "sha256": cv.read(doc).fingerprint, "adr": adr},
    ]
    _write_published(copy, data)


def test_a_pre_1_0_document_changes_through_an_adr_that_names_it(copy: Path) -> None:
    (copy / "docs/adr/0099-x.md").write_text("# 0099\nChanges contracts/api/tokenizer.v1.openapi.yaml.\n")
    _pre_1_0(copy, "docs/adr/0099-x.md")
    assert cv.problems() == []


def test_a_pre_1_0_change_refuses_a_missing_adr(copy: Path) -> None:
    _pre_1_0(copy, "docs/adr/0098-missing.md")
    assert any("does not exist" in p for p in cv.problems())


def test_a_pre_1_0_change_refuses_an_adr_that_does_not_name_the_document(copy: Path) -> None:
    (copy / "docs/adr/0099-x.md").write_text("# 0099\nChanges the ingest API.\n")
    _pre_1_0(copy, "docs/adr/0099-x.md")
    assert any("does not name" in p for p in cv.problems())


def test_a_published_document_is_never_removed(copy: Path) -> None:
    (copy / "contracts/events/record.normalized.v1.json").unlink()
    assert any("gone" in p for p in cv.problems())


def test_an_additive_sdl_change_is_a_minor_version_that_must_be_recorded(copy: Path) -> None:
    sdl = copy / "contracts/graphql/schema.graphql"
    major, minor = cv.version_tuple(cv.read(sdl).version)
    bumped = f"v{major}.{minor + 1}"
    _edit(sdl, f"API v{major}.{minor}:", f"API {bumped}:")
    _edit(sdl, "type Tokens {", "type Tokens {\n  added: String")
    assert cv.read(sdl).version == bumped
    assert any(bumped in p and "not in contracts/published.yaml" in p for p in cv.problems())
    data = _published(copy)
    data["documents"]["graphql/schema.graphql"].append({"version": bumped, "sha256": cv.read(sdl).fingerprint})
    _write_published(copy, data)
    assert cv.problems() == []
