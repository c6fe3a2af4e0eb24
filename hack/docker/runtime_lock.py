"""Print the runtime subset of requirements.lock: what `[project].dependencies` pulls in, with hashes.

requirements.lock holds the runtime *and* the dev extra (pytest, ruff, mypy, ...). The images install
only what the services and the operator import, still hash-checked, so this walks the lock's
`# via` annotations (written by `uv pip compile`) from the project's own dependencies and prints
the matching blocks verbatim. Stdlib only: it runs in the image's builder stage before anything
is installed.

Usage: python runtime_lock.py [pyproject.toml] [requirements.lock] > runtime.lock
"""

from __future__ import annotations

import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

_HEADER = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==")
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_PROJECT_VIA = re.compile(r"\(pyproject\.toml\)")


def normalize(name: str) -> str:
    """PEP 503 normalisation, so `PyYAML`, `pyyaml` and `py_yaml` compare equal."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class Block:
    """One locked requirement: its text (pin, markers, hashes) and who pulls it in."""

    name: str
    lines: list[str] = field(default_factory=list)
    via: set[str] = field(default_factory=set)


def parse_lock(text: str) -> dict[str, Block]:
    """Split a `uv pip compile --generate-hashes` lock into blocks keyed by normalised name."""
    blocks: dict[str, Block] = {}
    current: Block | None = None
    for line in text.splitlines():
        header = _HEADER.match(line)
        if header:
            current = Block(normalize(header.group(1)), [line])
            blocks[current.name] = current
            continue
        if current is None:
            continue
        stripped = line.strip()
        if stripped.startswith("--hash") or stripped.endswith("\\"):
            current.lines.append(line)
        elif stripped.startswith("#"):
            via = stripped.lstrip("#").strip()
            via = via.removeprefix("via").strip()
            if via and not _PROJECT_VIA.search(via):
                current.via.add(normalize(via.split()[0]))
    return blocks


def runtime_roots(pyproject: str) -> set[str]:
    """Names of `[project].dependencies` (extras and version specifiers dropped)."""
    deps = tomllib.loads(pyproject)["project"]["dependencies"]
    roots = set()
    for dep in deps:
        match = _NAME.match(dep)
        if match:
            roots.add(normalize(match.group(1)))
    return roots


def runtime_subset(pyproject: str, lock: str) -> list[Block]:
    """Blocks of the roots plus everything any included block pulls in, in lock order.

    Raises:
        KeyError: a runtime dependency is missing from the lock (re-run `make lock`).
    """
    blocks = parse_lock(lock)
    roots = runtime_roots(pyproject)
    missing = roots - blocks.keys()
    if missing:
        raise KeyError(f"not in requirements.lock (run `make lock`): {sorted(missing)}")
    keep = set(roots)
    changed = True
    while changed:
        changed = False
        for block in blocks.values():
            if block.name not in keep and block.via & keep:
                keep.add(block.name)
                changed = True
    return [block for block in blocks.values() if block.name in keep]


def main(argv: list[str]) -> int:
    pyproject = Path(argv[1] if len(argv) > 1 else "pyproject.toml").read_text()
    lock = Path(argv[2] if len(argv) > 2 else "requirements.lock").read_text()
    for block in runtime_subset(pyproject, lock):
        print("\n".join(block.lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
