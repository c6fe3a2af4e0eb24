"""Loaders for `contracts/`: the single source of truth the running code is checked against.

In a checkout the directory is the repo's `contracts/`; in the image it ships inside the package
(`exchange/_contracts`); `EXCHANGE_CONTRACTS_DIR` overrides both.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema_rs
import orjson
import yaml
from jsonschema import Draft202012Validator
from jsonschema.protocols import Validator

from exchange.core.errors import ConfigError


@functools.cache
def contracts_dir() -> Path:
    env = os.environ.get("EXCHANGE_CONTRACTS_DIR")
    here = Path(__file__).resolve()
    candidates = [Path(env)] if env else []
    candidates += [here.parents[1] / "_contracts", here.parents[3] / "contracts"]
    for path in candidates:
        if (path / "api").is_dir() or (path / "events").is_dir():
            return path
    raise ConfigError("contracts directory not found; set EXCHANGE_CONTRACTS_DIR")


@functools.cache
def load_document(relative: str) -> Any:
    """Parse a contract file (YAML or JSON) relative to contracts/."""
    path = contracts_dir() / relative
    text = path.read_bytes()
    return orjson.loads(text) if path.suffix == ".json" else yaml.safe_load(text)


@functools.cache
def event_validator(name: str) -> Validator:
    """A JSON Schema 2020-12 validator for `contracts/events/<name>.json` (format checks on)."""
    schema = load_document(f"events/{name}.json")
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


@functools.cache
def event_check(name: str) -> jsonschema_rs.Draft202012Validator:
    """A compiled (jsonschema-rs) validator of the same schema for the hot path; each format of the
    schema is checked as `event_validator`'s format checker checks it (`_format_check`), so both
    accept the same documents. Use `event_validator` for the error pointers."""
    schema = load_document(f"events/{name}.json")
    formats = {f: _format_check(f) for f in _formats(schema)}
    return jsonschema_rs.Draft202012Validator(schema, validate_formats=True, formats=formats)


_CANONICAL = {"uuid": re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")}
"""Values of a format that the reference checker accepts, matched without calling it."""


def _format_check(name: str) -> Callable[[str], bool]:
    """`format` as the reference checker decides it: a format it has no library for passes; a value
    in the canonical shape passes without the checker's call (3 times the cost of the whole rest
    of the check of an event)."""
    checker = Draft202012Validator.FORMAT_CHECKER
    if name not in checker.checkers:
        return lambda value: True
    canonical = _CANONICAL[name].fullmatch if name in _CANONICAL else lambda value: None
    return lambda value: canonical(value) is not None or checker.conforms(value, name)


def _formats(node: Any) -> set[str]:
    """Every `format` keyword value in a schema."""
    if isinstance(node, dict):
        found = {node["format"]} if isinstance(node.get("format"), str) else set()
        return found.union(*(_formats(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_formats(v) for v in node))
    return set()


def error_pointers(validator: Validator, instance: Any, limit: int = 20) -> list[dict[str, str]]:
    """JSON pointers and failing keywords of `instance`, never the offending values."""
    out = []
    for err in sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))[:limit]:
        pointer = "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in err.absolute_path)
        out.append({"pointer": pointer, "reason": str(err.validator)})
    return out
