"""Generate the ExchangePipeline CRD from the models in `spec.py` (the one schema source).

pydantic's JSON Schema is turned into a Kubernetes *structural* schema: `$ref`s inlined,
`anyOf [X, null]` folded into an optional X, titles dropped, `default: {}` on optional objects
whose fields all have defaults (so the API server fills nested defaults), CEL rules kept.
`hack/gen-crd` writes the result; a unit test fails when the committed YAML drifts from it.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic.json_schema import GenerateJsonSchema, NoDefault

from exchange_operator import spec as api

CRD_NAME = f"{api.PLURAL}.{api.GROUP}"
CRD_FILENAME = f"{CRD_NAME}.yaml"
CRD_PATHS = (Path("manifests/crd") / CRD_FILENAME, Path("charts/exchange-operator/crds") / CRD_FILENAME)
"""Where the generated CRD is committed, relative to the repository root."""

_DROP = {"title", "additionalProperties"}


class _WithFactoryDefaults(GenerateJsonSchema):
    """Emit defaults produced by `default_factory` too (pydantic leaves them out)."""

    def get_default_value(self, schema: Any) -> Any:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            return factory()
        return schema.get("default", NoDefault)


def _strip_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_none(v) for v in value]
    return value


def implied_default(schema: dict[str, Any]) -> Any:
    """What the API server makes of an absent field: its default, defaulted recursively."""
    if "default" not in schema:
        return None
    value = copy.deepcopy(schema["default"])
    if isinstance(value, dict):
        for name, child in schema.get("properties", {}).items():
            if name not in value and (child_default := implied_default(child)) is not None:
                value[name] = child_default
    return value


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    """Inline `$ref`s and fold optional unions, recursively."""
    if isinstance(node, list):
        return [_resolve(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = copy.deepcopy(defs[node.pop("$ref").rsplit("/", 1)[-1]])
        # `kubectl explain` shows one description: the field's, then what the model adds.
        described = [d for d in (node.get("description"), target.get("description")) if d]
        node = {**target, **node}
        if len(described) == 2 and described[1] not in described[0]:
            node["description"] = " ".join(described)
    if "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
        branches = [b for b in node["anyOf"] if b.get("type") != "null"]
        if len(branches) == 1:
            del node["anyOf"]
            node = {**_resolve(branches[0], defs), **node}
            if node.get("default", ...) is None:
                del node["default"]
            node["x-exchange-optional"] = True
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP and not (key == "additionalProperties" and isinstance(value, dict)):
            continue
        if key == "properties":
            out[key] = {k: _resolve(v, defs) for k, v in value.items()}
        elif key in {"items", "additionalProperties", "anyOf"}:
            out[key] = _resolve(value, defs)
        else:
            out[key] = value
    if "properties" in out:
        out.pop("additionalProperties", None)  # mutually exclusive in a structural schema
    return out


def _finish(node: dict[str, Any]) -> dict[str, Any]:
    """Add `default: {}` to optional all-defaulted objects; drop the internal optional marker."""
    optional = node.pop("x-exchange-optional", False)
    for child in node.get("properties", {}).values():
        _finish(child)
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            _finish(node[key])
    if "default" in node:
        node["default"] = _strip_none(node["default"])
        if optional and node["default"] in ({}, []):
            del node["default"]  # an optional object stays absent unless the user sets it
    if isinstance(node.get("default"), dict) and "properties" in node:
        # Write `{}` when the fields' own defaults already produce the same object (readable CRD).
        # Not where CEL rules sit: the API server checks a default against the rules as written.
        full = implied_default({**node, "default": {}})
        if full == node["default"] and "x-kubernetes-validations" not in node:
            node["default"] = {}
    if node.get("default") == []:
        del node["default"]  # absent and empty lists read the same
    if node.get("type") == "object" and "properties" not in node and "additionalProperties" not in node:
        node["x-kubernetes-preserve-unknown-fields"] = True
    return node


def schema_of(model: type[api.Model]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of one model."""
    raw = model.model_json_schema(by_alias=True, mode="validation", schema_generator=_WithFactoryDefaults)
    defs = raw.pop("$defs", {})
    schema = _finish(_resolve(raw, defs))
    schema.pop("default", None)
    return schema


def _conditions_as_map(status: dict[str, Any]) -> None:
    conditions = status["properties"]["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]


def build_crd() -> dict[str, Any]:
    """The whole CustomResourceDefinition as a dict."""
    spec_schema = schema_of(api.ExchangePipelineSpec)
    status_schema = schema_of(api.ExchangePipelineStatus)
    _conditions_as_map(status_schema)
    root = {
        "type": "object",
        "description": "An Exchange pipeline: ingest, relay, tokenizer, normalizer and query with their engines.",
        "required": ["spec"],
        "x-kubernetes-validations": [
            {
                "rule": f"size(self.metadata.name) <= {api.MAX_NAME_LENGTH}",
                "message": f"metadata.name must be at most {api.MAX_NAME_LENGTH} characters",
            }
        ],
        "properties": {
            "apiVersion": {"type": "string", "description": "API version of this object."},
            "kind": {"type": "string", "description": "Kind of this object."},
            "metadata": {"type": "object"},
            "spec": spec_schema,
            "status": status_schema,
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {
            "group": api.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": api.KIND,
                "listKind": f"{api.KIND}List",
                "plural": api.PLURAL,
                "singular": api.SINGULAR,
                "shortNames": list(api.SHORT_NAMES),
                "categories": ["exchange"],
            },
            "versions": [
                {
                    "name": api.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {
                            "name": "Ready",
                            "type": "string",
                            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
                        },
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        {"name": "Ingest URL", "type": "string", "jsonPath": ".status.endpoints.ingest"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


def render() -> str:
    """The CRD as the YAML committed to the repository."""
    header = "# Generated by hack/gen-crd from operator/exchange_operator/spec.py. Do not edit.\n"
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=100)


def write(repo_root: Path) -> list[Path]:
    """Write the CRD to every path in CRD_PATHS; returns the paths written."""
    text = render()
    written = []
    for rel in CRD_PATHS:
        path = repo_root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
