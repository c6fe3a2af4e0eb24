"""Print one image's subset of requirements.lock: the base dependencies plus one extra's, with hashes.

requirements.lock holds every dependency set (the shared base, the `services` and `operator` extras
and the dev extra). Each image installs only what it runs, still hash-checked, so this takes the
roots from pyproject.toml (`[project].dependencies` plus the chosen extras, following the project's
own `exchange[...]` references), walks the lock's `# via` annotations (written by `uv pip compile`)
from them and prints the matching blocks verbatim. Stdlib only: it runs in the image's builder stage
before anything is installed.

Usage: python runtime_lock.py [--extra NAME ...] [pyproject.toml] [requirements.lock] > runtime.lock
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

_HEADER = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==")
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


def _requirement(dep: str) -> tuple[str, list[str]]:
    """(normalised name, extras) of a PEP 508 requirement string."""
    match = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?", dep)
    if match is None:
        raise ValueError(f"not a requirement: {dep!r}")
    extras = [normalize(e.strip()) for e in (match.group(2) or "").split(",") if e.strip()]
    return normalize(match.group(1)), extras


def runtime_roots(pyproject: str, extras: Sequence[str] = ()) -> set[str]:
    """Names of `[project].dependencies` plus those of `extras` (version specifiers dropped).

    A requirement on the project itself (`exchange[services,operator]`) adds those extras' names.

    Raises:
        KeyError: an extra pyproject.toml does not define.
    """
    project = tomllib.loads(pyproject)["project"]
    own = normalize(project["name"])
    optional = {normalize(name): deps for name, deps in project.get("optional-dependencies", {}).items()}
    roots: set[str] = set()
    seen: set[str] = set()

    def add(deps: Sequence[str]) -> None:
        for dep in deps:
            name, wanted = _requirement(dep)
            if name != own:
                roots.add(name)
                continue
            for extra in wanted:
                add_extra(extra)

    def add_extra(extra: str) -> None:
        if extra in seen:
            return
        if extra not in optional:
            raise KeyError(f"no extra {extra!r} in pyproject.toml; known: {sorted(optional)}")
        seen.add(extra)
        add(optional[extra])

    add(project["dependencies"])
    for extra in extras:
        add_extra(normalize(extra))
    return roots


def runtime_subset(pyproject: str, lock: str, extras: Sequence[str] = ()) -> list[Block]:
    """Blocks of the roots plus everything any included block pulls in, in lock order.

    Raises:
        KeyError: an unknown extra, or a dependency missing from the lock (re-run `make lock`).
    """
    blocks = parse_lock(lock)
    roots = runtime_roots(pyproject, extras)
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
    parser = argparse.ArgumentParser(prog="runtime_lock.py", description=__doc__.splitlines()[0])
    parser.add_argument("--extra", action="append", default=[], help="an optional-dependencies set to add")
    parser.add_argument("pyproject", nargs="?", default="pyproject.toml")
    parser.add_argument("lock", nargs="?", default="requirements.lock")
    args = parser.parse_args(argv[1:])
    try:
        blocks = runtime_subset(Path(args.pyproject).read_text(), Path(args.lock).read_text(), args.extra)
    except (KeyError, ValueError, OSError) as exc:
        sys.stderr.write(f"runtime_lock.py: {exc.args[0] if isinstance(exc, KeyError) else exc}\n")
        return 1
    for block in blocks:
        print("\n".join(block.lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
