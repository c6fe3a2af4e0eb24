"""Published contract versions and their fingerprints (issue 23, point 2; ADR 0011).

`contracts/published.yaml` lists, per contract document, every version it has published, oldest
first: the version, the SHA-256 of the normalized document, and optionally the ADR that allowed
the entry. `problems()` compares the documents on disk with it:

- a document not listed, or its current version not listed → it must be recorded;
- its current version listed with another fingerprint → a published version changed: publish a
  new version instead (for a pre-1.0 version, append an entry of the same version that names an
  ADR, which must exist and name the document);
- versions only grow, a major above the file name's `.vN` needs a new file (`ingest.v2...`).

Normalized means what a reader of the contract sees: YAML and JSON are parsed and hashed as
canonical JSON (formatting and YAML comments do not count, every description does); the
GraphQL SDL is parsed and printed by graphql-core (comments do not count, descriptions do).
`python -m exchange_devtools.contract_versions` prints each document's version and fingerprint.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml
from graphql import parse, print_ast

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = ROOT / "contracts"
PUBLISHED = CONTRACTS / "published.yaml"
DOCUMENTS = ("api/*.openapi.yaml", "events/*.json", "graphql/*.graphql")

_FILE_MAJOR = re.compile(r"\.v(\d+)\.")
_SDL_VERSION = re.compile(r"^# .*\bAPI v(\d+(?:\.\d+)?)\b", re.MULTILINE)


@dataclass(frozen=True)
class Document:
    """One contract file as it is now."""

    path: str  # relative to contracts/
    version: str
    fingerprint: str


def version_tuple(version: str) -> tuple[int, ...]:
    """`1.0.0` → (1, 0, 0), `v1` → (1,): comparable, and major 0 means pre-1.0."""
    return tuple(int(p) for p in version.removeprefix("v").split("."))


def _version(path: Path, text: str, parsed: Any) -> str:
    """OpenAPI: `info.version`; an event schema: the `.vN` of its `$id`; the SDL: `API vN` or
    `API vN.M` (an additive change) in its header comment (the file name carries no version)."""
    if path.suffix == ".graphql":
        found = _SDL_VERSION.search(text)
        if not found:
            raise ValueError(f"{path.name}: no 'API vN' in its header comment")
        return f"v{found.group(1)}"
    if "openapi" in parsed:
        return str(parsed["info"]["version"])
    found = _FILE_MAJOR.search(str(parsed["$id"]))
    if not found:
        raise ValueError(f"{path.name}: no .vN in its $id")
    return f"v{found.group(1)}"


def read(path: Path) -> Document:
    """Version and fingerprint of one contract file."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".graphql":
        parsed: Any = None
        normalized = print_ast(parse(text)).encode()
    else:
        parsed = orjson.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        normalized = orjson.dumps(parsed, option=orjson.OPT_SORT_KEYS)
    rel = path.relative_to(CONTRACTS).as_posix()
    return Document(rel, _version(path, text, parsed), hashlib.sha256(normalized).hexdigest())


def documents() -> list[Document]:
    return [read(p) for pattern in DOCUMENTS for p in sorted(CONTRACTS.glob(pattern))]


def load_published() -> dict[str, list[dict[str, str]]]:
    return dict(yaml.safe_load(PUBLISHED.read_text(encoding="utf-8"))["documents"])


def _adr_problem(doc: str, adr: str) -> str | None:
    """An entry's ADR must exist and name the document it allows."""
    file = ROOT / adr
    if not file.is_file():
        return f"{doc}: ADR {adr} does not exist"
    if doc not in file.read_text(encoding="utf-8"):
        return f"{doc}: ADR {adr} does not name contracts/{doc}"
    return None


def _history_problems(doc: str, history: list[dict[str, str]]) -> list[str]:
    out = []
    for prev, entry in itertools.pairwise(history):
        before, now = version_tuple(prev["version"]), version_tuple(entry["version"])
        if now < before:
            out.append(f"{doc}: version {entry['version']} listed after {prev['version']}")
        elif now == before and (before[0] >= 1 or "adr" not in entry):
            # A published (>= 1.0) version never changes; a pre-1.0 one only through an ADR.
            out.append(f"{doc}: version {entry['version']} listed twice (a published version changed)")
    for entry in history:
        if "adr" in entry and (p := _adr_problem(doc, entry["adr"])):
            out.append(p)
    return out


def problems() -> list[str]:
    """Every way the documents on disk break the rule above; empty when they keep it."""
    published, out = load_published(), []
    for d in documents():
        history = published.get(d.path, [])
        out += _history_problems(d.path, history)
        file_major, major = _FILE_MAJOR.search(d.path), version_tuple(d.version)[0]
        if file_major and major not in (0, int(file_major.group(1))):
            out.append(f"{d.path}: version {d.version} needs a file of its own major (.v{major}.)")
        entries = [e for e in history if e["version"] == d.version]
        if not entries:
            out.append(f"{d.path}: version {d.version} ({d.fingerprint}) is not in contracts/published.yaml")
        elif entries[-1]["sha256"] != d.fingerprint:
            out.append(
                f"{d.path}: published version {d.version} changed (now {d.fingerprint}); publish a new version"
                + (" or append an entry with an ADR (pre-1.0)" if version_tuple(d.version)[0] == 0 else "")
            )
        elif history[-1]["version"] != d.version:
            out.append(f"{d.path}: version {d.version} is older than the last published {history[-1]['version']}")
    missing = set(published) - {d.path for d in documents()}
    out += [f"{p}: listed in contracts/published.yaml but gone (a published version is never removed)" for p in missing]
    return out


def main() -> None:
    for d in documents():
        print(f"{d.path}  {d.version}  {d.fingerprint}")


if __name__ == "__main__":
    main()
