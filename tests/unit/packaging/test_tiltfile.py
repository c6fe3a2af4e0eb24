"""The Tiltfile, evaluated without tilt.

tilt is not on the Go module proxy this project can reach, so `tilt alpha tiltfile-result` cannot
run here. The Tiltfile is written in the subset of Starlark that is also Python; this test checks
that subset, then executes it with recording stand-ins for Tilt's built-ins and checks what it
asks Tilt to do. It proves the calls and their arguments, not Tilt's own semantics.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
TILTFILE = REPO / "Tiltfile"

# Python constructs Starlark does not have.
NOT_STARLARK = (ast.JoinedStr, ast.Import, ast.ImportFrom, ast.While, ast.ClassDef, ast.Try, ast.With, ast.Lambda)


class TiltFailed(Exception):
    """Raised by the stand-in for Tilt's fail()."""


class Recorder:
    """Stand-ins for the Tilt built-ins the Tiltfile uses; every call is recorded."""

    def __init__(self, context: str) -> None:
        self.context = context
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def record(self, name: str):
        def builtin(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args, kwargs))
            return (name, args, kwargs)

        return builtin

    def fail(self, message: str) -> None:
        raise TiltFailed(message)

    def namespace(self) -> dict[str, Any]:
        names = [
            "allow_k8s_contexts",
            "docker_build",
            "fall_back_on",
            "sync",
            "run",
            "helm",
            "k8s_yaml",
            "k8s_resource",
            "k8s_kind",
            "local_resource",
            "link",
        ]
        env: dict[str, Any] = {name: self.record(name) for name in names}
        env["k8s_context"] = lambda: self.context
        env["fail"] = self.fail
        env["__builtins__"] = {"str": str, "len": len, "range": range, "list": list, "dict": dict}
        return env

    def named(self, name: str) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
        return [(args, kwargs) for call, args, kwargs in self.calls if call == name]


def evaluate(context: str = "kind-exchange") -> Recorder:
    recorder = Recorder(context)
    exec(compile(TILTFILE.read_text(), str(TILTFILE), "exec"), recorder.namespace())
    return recorder


def test_the_tiltfile_uses_only_starlark_syntax():
    tree = ast.parse(TILTFILE.read_text())
    offending = [type(node).__name__ for node in ast.walk(tree) if isinstance(node, NOT_STARLARK)]
    assert not offending


def test_it_refuses_any_context_but_the_kind_cluster():
    with pytest.raises(TiltFailed, match="kind-exchange"):
        evaluate(context="prod-cluster")


def test_it_allows_only_the_kind_context():
    recorder = evaluate()
    assert recorder.named("allow_k8s_contexts") == [(("kind-exchange",), {})]


def test_the_services_image_live_updates_services_into_the_image():
    builds = {args[0]: kwargs for args, kwargs in evaluate().named("docker_build")}
    services = builds["exchange"]
    assert services["dockerfile"] == "Dockerfile"
    assert services["target"] == "services"
    steps = services["live_update"]
    syncs = [args for name, args, _ in steps if name == "sync"]
    assert ("services/", "/app/services/") in syncs
    assert steps[0][0] == "fall_back_on", "dependency changes must rebuild, and fall_back_on comes first"


def test_the_operator_image_is_the_operator_target_of_the_same_dockerfile():
    builds = {args[0]: kwargs for args, kwargs in evaluate().named("docker_build")}
    assert builds["exchange-operator"]["dockerfile"] == "Dockerfile"
    assert builds["exchange-operator"]["target"] == "operator"
    assert "services/" not in builds["exchange-operator"]["only"], "a services edit must not rebuild the operator"
    for kwargs in builds.values():
        for path in kwargs["only"]:
            assert (REPO / path).exists(), path
        assert (REPO / kwargs["dockerfile"]).is_file()


def test_the_chart_is_installed_and_a_sample_applied():
    recorder = evaluate()
    (chart_args, chart_kwargs) = recorder.named("helm")[0]
    assert chart_args == ("charts/exchange-operator",)
    assert (REPO / chart_args[0] / "Chart.yaml").is_file()
    assert "image.repository=exchange-operator" in chart_kwargs["set"]
    yaml_paths = [args[0] for args, _ in recorder.named("k8s_yaml") if isinstance(args[0], str)]
    assert yaml_paths == ["manifests/samples/minimal.yaml"]
    assert (REPO / yaml_paths[0]).is_file()


def test_the_pipeline_image_is_substituted_by_tilt():
    (args, kwargs) = evaluate().named("k8s_kind")[0]
    assert args == ("ExchangePipeline",)
    assert kwargs["image_object"] == {"json_path": "{.spec.image}", "repo_field": "repository", "tag_field": "tag"}


def test_ingest_and_query_are_port_forwarded_on_8080_and_8081():
    forwards = {args[0]: kwargs["serve_cmd"] for args, kwargs in evaluate().named("local_resource")}
    assert forwards["ingest-port-forward"][-2:] == ["deployment/minimal-ingest", "8080:8080"]
    assert forwards["query-port-forward"][-2:] == ["deployment/minimal-query", "8081:8080"]
