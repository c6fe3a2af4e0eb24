"""manifests/samples/: the pipelines people start from parse with the operator's own spec models.

The same documents are applied to a real API server (server-side dry run, so the generated CRD's
schema and CEL rules judge them) in tests/integration/packaging/test_chart.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from exchange_operator.spec import GROUP, KIND, VERSION, parse_spec

REPO = Path(__file__).resolve().parents[3]
SAMPLES = sorted((REPO / "manifests" / "samples").glob("*.yaml"))


def load(name: str) -> dict:
    return yaml.safe_load((REPO / "manifests" / "samples" / name).read_text())


def test_there_is_a_minimal_and_a_production_sample():
    assert {path.name for path in SAMPLES} >= {"minimal.yaml", "production.yaml"}


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_a_sample_is_an_exchange_pipeline_the_operator_accepts(path: Path):
    document = yaml.safe_load(path.read_text())
    assert document["apiVersion"] == f"{GROUP}/{VERSION}"
    assert document["kind"] == KIND
    assert "namespace" not in document["metadata"], "samples go into whatever namespace kubectl targets"
    parse_spec(document["spec"])


def test_the_minimal_sample_uses_dev_auth_and_the_kind_ingress():
    spec = parse_spec(load("minimal.yaml")["spec"])
    assert spec.auth.mode == "dev"
    assert spec.ingress.enabled and spec.ingress.class_name == "nginx"
    assert spec.ingress.ingest and spec.ingress.ingest.path == "/v1"
    assert {spec.engines.postgres.mode, spec.engines.kafka.mode, spec.engines.s3.mode} == {"managed"}
    assert (spec.image.repository, spec.image.tag) == ("exchange", "dev")


def test_the_production_sample_uses_jwt_tls_external_engines_and_explicit_storage():
    spec = parse_spec(load("production.yaml")["spec"])
    assert spec.auth.mode == "jwt" and spec.auth.jwks_url and spec.auth.jwks_url.startswith("https://")
    assert spec.ingress.tls and spec.ingress.tls.secret_name
    assert spec.engines.postgres.mode == "external" and spec.engines.kafka.mode == "external"
    assert spec.engines.s3.managed.storage.storage_class_name
    assert spec.tokenization.secret_ref is not None, "a production secret is referenced, not generated"
    assert all(getattr(spec.components, c).replicas >= 2 for c in ("ingest", "tokenizer", "normalizer", "query"))
    assert spec.image.tag != "latest"
