"""The CRD is generated from spec.py, committed, and agrees with what the operator parses."""

from pathlib import Path

import pytest
import yaml

from exchange_operator import crd
from exchange_operator.spec import ExchangePipelineSpec, parse_spec

REPO = Path(__file__).resolve().parents[3]


def _walk(schema, path="spec"):
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from _walk(child, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from _walk(schema[key], f"{path}[]")


def _version():
    return crd.build_crd()["spec"]["versions"][0]


@pytest.mark.parametrize("relative", crd.CRD_PATHS, ids=str)
def test_committed_crd_matches_the_generated_one(relative):
    committed = (REPO / relative).read_text()
    assert committed == crd.render(), f"{relative} drifted from spec.py: run hack/gen-crd"


def test_every_field_has_a_description_for_kubectl_explain():
    root = _version()["schema"]["openAPIV3Schema"]
    for part in ("spec", "status"):
        missing = [
            p
            for p, node in _walk(root["properties"][part], part)
            if not node.get("description") and not (p.endswith("[]") and node.get("type") != "object")
        ]
        assert missing == []


def test_the_schema_is_structural():
    root = _version()["schema"]["openAPIV3Schema"]
    for path, node in _walk(root["properties"]["spec"]):
        assert "$ref" not in node, path
        assert "type" in node or node.get("x-kubernetes-int-or-string"), path
        assert not ("properties" in node and "additionalProperties" in node), path


def test_status_subresource_short_name_and_printer_columns():
    version = _version()
    assert version["subresources"] == {"status": {}}
    assert crd.build_crd()["spec"]["names"]["shortNames"] == ["xpl"]
    names = [c["name"] for c in version["additionalPrinterColumns"]]
    assert names == ["Ready", "Phase", "Ingest URL", "Age"]


def test_api_server_defaults_of_an_empty_spec_equal_the_models_defaults():
    spec_schema = _version()["schema"]["openAPIV3Schema"]["properties"]["spec"]
    defaulted = {
        name: crd.implied_default(child)
        for name, child in spec_schema["properties"].items()
        if crd.implied_default(child) is not None
    }
    assert parse_spec(defaulted) == ExchangePipelineSpec()


def test_cel_rules_of_the_crd_are_the_rules_the_operator_checks():
    text = crd.render()
    for model in (ExchangePipelineSpec.model_fields["auth"].annotation,):
        for rule in model.rules:
            assert rule.message in text
    loaded = yaml.safe_load(text)
    rules = [
        v["rule"]
        for _, node in _walk(loaded["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"])
        for v in node.get("x-kubernetes-validations", [])
    ]
    assert len(rules) == 9  # ingress x2, auth, postgres, kafka x2, s3 x2, s3 managed
