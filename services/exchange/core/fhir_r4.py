"""FHIR R4 structure, checked against the official FHIR R4 JSON Schema (ADR 0012).

The schema is HL7's `fhir.schema.json` for FHIR 4.0 (every resource type and data type), kept
as `contracts/fhir/fhir.schema.json.gz` and compiled by `jsonschema-rs`, one validator per
resource type, on first use. Three things JSON Schema can say that the published document does
not are added when it is loaded:

- `ResourceList` (a `contained` resource, a Bundle entry's `resource`) dispatches on
  `resourceType` instead of a 146-way `oneOf`, so a violation inside one is reported at its own
  pointer, not as "matches none of the alternatives";
- every resource and complex data type is a JSON object (the document leaves out `type`, so a
  string where a Reference belongs passed);
- `integer`, `positiveInt` and `unsignedInt` are 32-bit integers, as FHIR R4 says.

Errors are JSON pointers and schema keywords only, never values.
"""

from __future__ import annotations

import functools
import gzip
from typing import Any

import jsonschema_rs
import orjson

from exchange.core.contracts import contracts_dir

SCHEMA = "fhir/fhir.schema.json.gz"
PointerErrors = list[dict[str, str]]
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


@functools.cache
def _definitions() -> dict[str, Any]:
    """The schema's definitions with the three additions of the module docstring."""
    document = orjson.loads(gzip.decompress((contracts_dir() / SCHEMA).read_bytes()))
    definitions: dict[str, Any] = document["definitions"]
    types = sorted(document["discriminator"]["mapping"])
    definitions["ResourceList"] = {
        "type": "object",
        "required": ["resourceType"],
        "properties": {"resourceType": {"enum": types}},
        "allOf": [
            {
                "if": {"properties": {"resourceType": {"const": t}}, "required": ["resourceType"]},
                "then": {"$ref": f"#/definitions/{t}"},
            }
            for t in types
        ],
    }
    for definition in definitions.values():
        if "properties" in definition:
            definition["type"] = "object"
    _int32(definitions)
    return definitions


# The patterns the schema gives FHIR's integer types (by name, and inlined into choice elements
# such as `valueInteger`) → their minimum; a pattern does not apply to a JSON number.
_INTEGER_PATTERNS = {"^-?([0]|([1-9][0-9]*))$": _INT32_MIN, "^[1-9][0-9]*$": 1, "^[0]|([1-9][0-9]*)$": 0}


def _int32(node: Any) -> None:
    """Make every integer-typed element of the schema a 32-bit JSON integer, in place."""
    if isinstance(node, dict):
        if node.get("type") == "number" and node.get("pattern") in _INTEGER_PATTERNS:
            minimum = _INTEGER_PATTERNS[node.pop("pattern")]
            node.update(type="integer", minimum=minimum, maximum=_INT32_MAX)
        for value in node.values():
            _int32(value)
    elif isinstance(node, list):
        for value in node:
            _int32(value)


@functools.cache
def resource_types() -> frozenset[str]:
    """Every FHIR R4 resource type (146)."""
    return frozenset(_definitions()["ResourceList"]["properties"]["resourceType"]["enum"])


@functools.cache
def validator(resource_type: str) -> Any:
    """The compiled validator of one resource type (~50 ms to compile, cached)."""
    return jsonschema_rs.Draft202012Validator({"$ref": f"#/definitions/{resource_type}", "definitions": _definitions()})


def _escape(part: Any) -> str:
    return str(part).replace("~", "~0").replace("/", "~1")


def _reason(error: Any) -> tuple[str, str]:
    """(pointer suffix, keyword) of one jsonschema-rs error. A missing member is named (the name
    comes from the schema); an unexpected one is not (its name comes from the body)."""
    keyword = str(error.schema_path[-1]) if error.schema_path else "invalid"
    if keyword == "required":
        return "/" + _escape(error.kind.property), keyword
    return "", keyword


def errors(doc: Any, prefix: str = "", limit: int = 20) -> PointerErrors:
    """[] when `doc` is a valid FHIR R4 resource of any type, else RFC 6901 pointers (under
    `prefix`) and failing keywords, sorted by pointer, at most `limit`."""
    if not isinstance(doc, dict):
        return [{"pointer": prefix, "reason": "type"}]
    rtype = doc.get("resourceType")
    if rtype is None:
        return [{"pointer": f"{prefix}/resourceType", "reason": "required"}]
    if not isinstance(rtype, str) or rtype not in resource_types():
        return [{"pointer": f"{prefix}/resourceType", "reason": "enum"}]
    check = validator(rtype)
    if check.is_valid(doc):
        return []
    found = set()
    for error in check.iter_errors(doc):
        suffix, keyword = _reason(error)
        found.add((prefix + "".join("/" + _escape(p) for p in error.instance_path) + suffix, keyword))
    return [{"pointer": pointer, "reason": reason} for pointer, reason in sorted(found)[:limit]]
