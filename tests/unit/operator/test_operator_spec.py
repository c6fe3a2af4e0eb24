"""Spec parsing: defaults, camelCase, and the cross-field rules shared with CEL."""

import pytest
from pydantic import ValidationError

from exchange_operator.reconcile import InvalidSpec, validate
from exchange_operator.spec import parse_spec


def test_an_empty_spec_is_a_managed_dev_pipeline():
    spec = parse_spec({})
    assert spec.auth.mode == "dev"
    assert spec.engines.postgres.mode == "managed"
    assert spec.components.ingest.replicas == 1
    assert spec.volume_claim_deletion_policy == "Retain"


def test_fields_are_camel_case_on_the_wire():
    spec = parse_spec(
        {
            "volumeClaimDeletionPolicy": "Delete",
            "auth": {"mode": "jwt", "issuer": "i", "audience": "a", "jwksUrl": "https://x/jwks"},
        }
    )
    assert spec.auth.jwks_url == "https://x/jwks"
    assert spec.volume_claim_deletion_policy == "Delete"


def test_integer_quantities_are_kept_as_text():
    spec = parse_spec({"components": {"ingest": {"resources": {"requests": {"cpu": 2}}}}})
    assert spec.components.ingest.resources.requests.cpu == "2"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"auth": {"mode": "jwt"}}, "auth.mode=jwt requires"),
        ({"engines": {"postgres": {"mode": "external"}}}, "mode external requires secretRef"),
        ({"engines": {"s3": {"secretRef": {"name": "s3"}}}}, "mode managed forbids it"),
        ({"ingress": {"tls": {"secretName": "tls"}}}, "ingress.tls requires at least one host"),
        ({"ingress": {"enabled": True}}, "ingress.enabled requires"),
        ({"engines": {"s3": {"managed": {"flavor": "s3proxy"}}}}, "flavor s3proxy requires image"),
        (
            {"engines": {"kafka": {"mode": "external", "secretRef": {"name": "k"}, "managed": {"flavor": "redpanda"}}}},
            "engines.kafka: managed.flavor is for mode managed",
        ),
        (
            {"engines": {"s3": {"mode": "external", "secretRef": {"name": "s"}, "managed": {"flavor": "minio"}}}},
            "engines.s3: managed.flavor is for mode managed",
        ),
        ({"engines": {"kafka": {"managed": {"flavor": "zookeeper-kafka"}}}}, "redpanda"),
        ({"surprise": 1}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_specs_are_rejected_with_the_cel_message(raw, message):
    with pytest.raises(ValidationError, match=message):
        parse_spec(raw)


def test_validate_turns_errors_into_one_line_naming_the_field():
    body = {"metadata": {"name": "p"}, "spec": {"engines": {"kafka": {"mode": "external"}}}}
    with pytest.raises(InvalidSpec, match=r"^spec\.engines\.kafka: engines\.kafka: mode external requires"):
        validate(body)


def test_long_names_are_invalid():
    with pytest.raises(InvalidSpec, match="at most 40"):
        validate({"metadata": {"name": "x" * 41}, "spec": {}})
