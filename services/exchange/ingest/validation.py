"""Records checked against `contracts/api/ingest.v1.openapi.yaml`: native envelopes against its
component schemas, FHIR R4 resources of every type against the official FHIR R4 JSON Schema
(`exchange.core.fhir_r4`, ADR 0012).

The native schemas are the contract's own JSON Schema 2020-12 components, so code and contract
cannot drift. Dispatch on `schema_version` happens here rather than through `oneOf`, so a
violation is reported at the failing pointer instead of as "matches none of the alternatives".
Errors carry JSON pointers and schema keywords only, never values.

Speed: each schema is also compiled by `jsonschema-rs` (~20x faster than the `jsonschema`
iterator, which dominated bulk ingest). The compiled validator only *accepts*: a record it
rejects is re-checked by `jsonschema`, which stays the authority for rejections and produces
the 422 pointers (a record the strict compiled check rejects but `jsonschema` accepts is
accepted). Both use the same format checkers (the `jsonschema` ones), so "valid" means the same.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jiter
import jsonschema_rs
import orjson
from jsonschema import Draft202012Validator
from jsonschema.protocols import Validator

from exchange.core import fhir_r4
from exchange.core.contracts import load_document

CONTRACT = "api/ingest.v1.openapi.yaml"
NATIVE_VERSIONS = {"v1": "NativeEnvelopeV1", "v2": "NativeEnvelopeV2"}
UNPACKED_BUNDLES = frozenset({"transaction", "batch", "collection"})
FHIR_VERSION = "fhir-r4"
PointerErrors = list[dict[str, str]]


class RecordInvalid(Exception):
    """A record violates the contract; `errors` are JSON pointers + keywords (no values)."""

    def __init__(self, errors: PointerErrors) -> None:
        super().__init__(f"{len(errors)} contract violation(s)")
        self.errors = errors


class DuplicateKey(ValueError):
    """A JSON object of the body repeats a key (the key is not named: it could be anything)."""


class Classified(NamedTuple):
    """What a valid record is: its format, type and envelope version. A NamedTuple, not a frozen
    dataclass: one is made per bulk line, and a frozen dataclass takes ~1 µs more to build."""

    source_format: str
    record_type: str
    schema_version: str


def _inline(node: Any, components: dict[str, Any], depth: int = 0) -> Any:
    """Resolve local `$ref`s in place (the contract has no recursive schemas): about 2x faster
    validation than resolving references through a registry on every call."""
    if depth > 32:
        raise ValueError("schema nesting too deep (recursive $ref?)")
    if isinstance(node, dict):
        if "$ref" in node:
            return _inline(components[node["$ref"].rsplit("/", 1)[-1]], components, depth + 1)
        return {k: _inline(v, components, depth + 1) for k, v in node.items() if k != "discriminator"}
    if isinstance(node, list):
        return [_inline(v, components, depth + 1) for v in node]
    return node


@functools.cache
def schema_validator(component: str) -> Validator:
    """A validator for `#/components/schemas/<component>` of the ingest contract."""
    components = load_document(CONTRACT)["components"]["schemas"]
    schema = _inline(components[component], components)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _same_formats(schema: Any, found: set[str] | None = None) -> set[str]:
    """The `format` values a schema uses."""
    found = set() if found is None else found
    if isinstance(schema, dict):
        if isinstance(schema.get("format"), str):
            found.add(schema["format"])
        for value in schema.values():
            _same_formats(value, found)
    elif isinstance(schema, list):
        for value in schema:
            _same_formats(value, found)
    return found


@functools.cache
def fast_validator(component: str) -> Any:
    """The compiled (`jsonschema-rs`) twin of `schema_validator(component)`: same schema, and each
    format checked by the very function `jsonschema` uses (a format it does not check, such as
    `date-time` without rfc3339-validator installed, is not checked here either)."""
    components = load_document(CONTRACT)["components"]["schemas"]
    schema = _inline(components[component], components)
    checker = Draft202012Validator.FORMAT_CHECKER
    formats: dict[str, Callable[..., bool]] = {
        name: functools.partial(checker.conforms, format=name) for name in _same_formats(schema)
    }
    return jsonschema_rs.Draft202012Validator(schema, formats=formats, validate_formats=True)


def _valid(component: str, doc: Any) -> PointerErrors:
    """[] when `doc` is valid, else its pointer errors (the compiled check first; `jsonschema`
    decides and explains every rejection)."""
    if fast_validator(component).is_valid(doc):
        return []
    return pointer_errors(schema_validator(component), doc)


def _escape(part: Any) -> str:
    return str(part).replace("~", "~0").replace("/", "~1")


def pointer_errors(validator: Validator, doc: Any, prefix: str = "", limit: int = 20) -> PointerErrors:
    """RFC 6901 pointers and failing keywords. A `required` error points at the missing member
    (its name comes from the schema); nothing is ever taken from the instance's values."""
    out: PointerErrors = []
    for err in sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path]):
        pointer = prefix + "".join("/" + _escape(p) for p in err.absolute_path)
        if err.validator == "required" and isinstance(err.instance, dict):
            missing = [str(n) for n in list(err.validator_value) if n not in err.instance]  # type: ignore[arg-type]
            out += [{"pointer": f"{pointer}/{_escape(n)}", "reason": "required"} for n in missing]
        else:
            out.append({"pointer": pointer, "reason": str(err.validator)})
        if len(out) >= limit:
            break
    return out[:limit]


def _check(component: str, doc: Any) -> None:
    errors = _valid(component, doc)
    if errors:
        raise RecordInvalid(errors)


def classify_native(doc: Any) -> Classified:
    """Validate a native envelope (v1 or v2); raises RecordInvalid."""
    if not isinstance(doc, dict):
        raise RecordInvalid([{"pointer": "", "reason": "type"}])
    version = doc.get("schema_version")
    if version is None:
        raise RecordInvalid([{"pointer": "/schema_version", "reason": "required"}])
    if not isinstance(version, str) or version not in NATIVE_VERSIONS:
        raise RecordInvalid([{"pointer": "/schema_version", "reason": "enum"}])
    _check(NATIVE_VERSIONS[version], doc)
    return Classified("native", str(doc["record_type"]), version)


def classify_fhir(doc: Any) -> Classified:
    """Validate a FHIR R4 resource of any type (a Bundle with its entries) against the official
    FHIR R4 JSON Schema; raises RecordInvalid."""
    errors = fhir_r4.errors(doc)
    if errors:
        raise RecordInvalid(errors)
    return Classified("fhir", str(doc["resourceType"]), FHIR_VERSION)


class Entry(NamedTuple):
    """One entry of an unpacked Bundle: its index (`position`), its resource's JSON (b"" when it
    is not valid) and what it is, or its pointer errors."""

    position: int
    data: bytes
    kind: Classified | None
    errors: PointerErrors


def unpacked_entries(doc: Any) -> list[Entry] | None:
    """The entries of a Bundle of type transaction, batch or collection, each validated on its
    own (pointers under `/entry/<i>/resource`); None for any other record. Raises RecordInvalid
    when the Bundle itself (outside its entries' resources) is invalid."""
    if not isinstance(doc, dict) or doc.get("resourceType") != "Bundle" or doc.get("type") not in UNPACKED_BUNDLES:
        return None
    entries = doc.get("entry")
    entries = entries if isinstance(entries, list) else []
    shell = {**doc, "entry": [{k: v for k, v in e.items() if k != "resource"} if isinstance(e, dict) else e
                              for e in entries]}  # fmt: skip
    if "entry" not in doc:
        del shell["entry"]
    errors = fhir_r4.errors(shell)
    if errors:
        raise RecordInvalid(errors)
    out = []
    for i, entry in enumerate(entries):
        where = f"/entry/{i}/resource"
        if "resource" not in entry:
            out.append(Entry(i, b"", None, [{"pointer": where, "reason": "required"}]))
            continue
        resource = entry["resource"]
        found = fhir_r4.errors(resource, where)
        kind = None if found else Classified("fhir", str(resource["resourceType"]), FHIR_VERSION)
        out.append(Entry(i, b"" if found else orjson.dumps(resource), kind, found))
    return out


def parse_json(data: bytes) -> Any:
    """Parse JSON as orjson does (the normalizer reads the raw record back with it), refusing an
    object that repeats a key: RFC 8259 leaves its meaning open, orjson keeps the last one, and a
    repeated `resourceType` let an empty Patient in. Raises ValueError, or DuplicateKey, with a
    value-free message."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ValueError("not valid JSON") from None
    try:
        jiter.from_json(data, catch_duplicate_keys=True, cache_mode=False)  # ~2x orjson's time
    except ValueError as exc:
        if str(exc).startswith("Detected duplicate key"):
            raise DuplicateKey("an object repeats a key") from None
        raise ValueError("not valid JSON") from None
    return doc


def classify(source_format: str, data: bytes) -> Classified:
    """Parse and validate one record of `source_format` (`native` or `fhir`)."""
    doc = parse_json(data)
    return classify_native(doc) if source_format == "native" else classify_fhir(doc)
