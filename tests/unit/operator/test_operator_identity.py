"""Workload identity builders, without a cluster: a ServiceAccount per service, the normalizer's
projected token for its tokenizer, and the tokenizer told to accept exactly that."""

import pytest

from exchange_operator.builders import build_children
from exchange_operator.builders.deployments import build_deployment
from exchange_operator.builders.identity import (
    TOKENIZER_TOKEN_FILE,
    build_service_accounts,
    normalizer_subject,
    tokenizer_audience,
)
from exchange_operator.builders.jobs import JOBS, build_job
from exchange_operator.spec import COMPONENTS, parse_spec


def _pod(manifest):
    return manifest["spec"]["template"]["spec"]


def _env(manifest):
    return {e["name"]: e.get("value") for e in _pod(manifest)["containers"][0].get("env", [])}


def test_every_service_has_a_service_account_of_its_own_that_mounts_no_token(spec, meta):
    accounts = build_service_accounts(spec, meta)
    assert [a["metadata"]["name"] for a in accounts] == [f"demo-{c}" for c in COMPONENTS]
    for account, component in zip(accounts, COMPONENTS, strict=True):
        assert account["kind"] == "ServiceAccount" and account["metadata"]["namespace"] == "health"
        assert account["automountServiceAccountToken"] is False
        assert account["metadata"]["labels"]["app.kubernetes.io/name"] == component
    assert accounts == [c for c in build_children(spec, meta) if c["kind"] == "ServiceAccount"]


@pytest.mark.parametrize("component", COMPONENTS)
def test_each_deployment_runs_as_its_own_service_account(spec, meta, component):
    assert _pod(build_deployment(spec, meta, component))["serviceAccountName"] == f"demo-{component}"


@pytest.mark.parametrize("component", COMPONENTS)
def test_only_the_tokenizer_gets_an_api_token_and_only_the_normalizer_a_token_for_the_tokenizer(spec, meta, component):
    pod = _pod(build_deployment(spec, meta, component))
    assert pod["automountServiceAccountToken"] is (component == "tokenizer")
    projected = [v for v in pod["volumes"] if "projected" in v]
    assert bool(projected) == (component == "normalizer")


def test_the_normalizer_projects_a_short_lived_token_for_its_tokenizer_and_names_the_file(spec, meta):
    dep = build_deployment(spec, meta, "normalizer")
    (volume,) = [v for v in _pod(dep)["volumes"] if "projected" in v]
    (source,) = volume["projected"]["sources"]
    token = source["serviceAccountToken"]
    assert token["audience"] == "http://demo-tokenizer.health.svc" == tokenizer_audience(meta)
    assert 600 <= token["expirationSeconds"] <= 3600
    assert token["expirationSeconds"] != 3607  # would be stretched to a year by the API server
    (mount,) = [m for m in _pod(dep)["containers"][0]["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["readOnly"] is True
    assert f"{mount['mountPath']}/{token['path']}" == TOKENIZER_TOKEN_FILE == _env(dep)["TOKENIZER_TOKEN_FILE"]


def test_the_tokenizer_accepts_exactly_the_normalizers_service_account_for_its_own_audience(spec, meta):
    env = _env(build_deployment(spec, meta, "tokenizer"))
    assert env["SERVICE_AUTH"] == "serviceaccount"
    assert env["SERVICE_TOKEN_AUDIENCE"] == tokenizer_audience(meta)
    assert env["SERVICE_TOKEN_SUBJECT"] == "system:serviceaccount:health:demo-normalizer" == normalizer_subject(meta)
    assert "SERVICE_TOKEN_ISSUER" not in env  # the API server's own, from its discovery document


@pytest.mark.parametrize("mode", ["dev", "jwt"])
def test_workload_identity_is_the_same_with_dev_auth(meta, mode):
    """On a real cluster `Bearer dev` never reaches the tokenizer, whatever spec.auth says."""
    auth = {"mode": "jwt", "issuer": "https://id.example", "audience": "x", "jwksUrl": "https://id.example/k"}
    spec = parse_spec({"auth": auth if mode == "jwt" else {"mode": "dev"}})
    assert _env(build_deployment(spec, meta, "tokenizer"))["SERVICE_AUTH"] == "serviceaccount"
    assert _env(build_deployment(spec, meta, "normalizer"))["TOKENIZER_TOKEN_FILE"] == TOKENIZER_TOKEN_FILE


def test_two_pipelines_in_one_namespace_never_accept_each_others_normalizer(meta):
    from exchange_operator.builders.common import Meta

    other = Meta(name="other", namespace=meta.namespace)
    assert tokenizer_audience(other) != tokenizer_audience(meta)
    assert normalizer_subject(other) != normalizer_subject(meta)


@pytest.mark.parametrize("job", JOBS)
def test_jobs_and_engines_keep_no_api_token(spec, meta, job):
    assert _pod(build_job(spec, meta, job))["automountServiceAccountToken"] is False
    for child in build_children(spec, meta):
        if child["kind"] == "StatefulSet":
            assert _pod(child)["automountServiceAccountToken"] is False


PRODUCTION_AUTH = {"mode": "jwt", "issuer": "https://id.example", "audience": "api", "jwksUrl": "https://id.example/k"}


def _settings_env(spec, meta, component) -> dict[str, str]:
    """What the container sees: the pipeline ConfigMap plus its env, Secret values made up."""
    from exchange_operator.builders.env import config_data

    made_up = {"DATABASE_URL": "postgresql://role:pw-0123456789@db/exchange"}
    env = dict(config_data(spec, meta))
    for item in _pod(build_deployment(spec, meta, component))["containers"][0]["env"]:
        env[item["name"]] = item["value"] if "value" in item else made_up.get(item["name"], "from-a-secret-0123456789")
    return env


@pytest.mark.parametrize("mode", ["jwt", "dev"])
def test_the_normalizer_and_the_tokenizer_accept_the_settings_the_operator_gives_them(meta, mode):
    """The production normalizer used to stop at start: TOKENIZER_TOKEN(_FILE) was required and not given."""
    from exchange.core.settings import load
    from exchange.normalizer.settings import NormalizerSettings
    from exchange.tokenizer.settings import TokenizerSettings

    spec = parse_spec({"auth": PRODUCTION_AUTH if mode == "jwt" else {"mode": "dev"}})
    normalizer = load(NormalizerSettings, **_settings_env(spec, meta, "normalizer"))
    assert str(normalizer.tokenizer_token_file) == TOKENIZER_TOKEN_FILE
    assert normalizer.tokenizer_url == tokenizer_audience(meta)  # the audience is the URL it calls
    tokenizer = load(TokenizerSettings, **_settings_env(spec, meta, "tokenizer"))
    assert tokenizer.service_auth == "serviceaccount"
    assert (tokenizer.service_token_subject, tokenizer.service_token_audience) == (
        normalizer_subject(meta),
        tokenizer_audience(meta),
    )
