"""charts/exchange-operator: every value is documented in values.yaml and in the README table."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "exchange-operator"


def leaf_keys(values: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and path not in {"resources", "podSecurityContext", "securityContext"}:
            keys += leaf_keys(value, path + ".")
        else:
            keys.append(path)
    return keys


def undocumented_values(text: str) -> list[str]:
    """Keys holding a value with no `#` comment directly above them or above an enclosing key.

    A bare section header (`image:` with keys below) needs no comment of its own; its keys do.
    """
    lines = text.splitlines()
    stack: list[tuple[int, bool]] = []  # (indent, documented) of the enclosing keys
    missing = []
    previous = ""
    for line in lines:
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#") or stripped.startswith("-") or ":" not in stripped:
            previous = stripped
            continue
        indent = len(line) - len(line.lstrip())
        while stack and stack[-1][0] >= indent:
            stack.pop()
        documented = previous.startswith("#") or any(doc for _, doc in stack)
        if not stripped.endswith(":") and not documented:
            missing.append(stripped.split(":")[0])
        stack.append((indent, documented))
        previous = stripped
    return missing


def test_every_value_has_a_comment_above_it():
    assert undocumented_values((CHART / "values.yaml").read_text()) == []


def test_the_documentation_check_catches_a_bare_value():
    text = "image:\n  # -- documented\n  repository: x\n  tag: y\nresources:\n  # -- all\n  requests:\n    cpu: 1\n"
    assert undocumented_values(text) == ["tag"]


def test_every_top_level_value_is_in_the_readme_table():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()
    missing = [key for key in leaf_keys(values) if f"`{key}" not in readme and f"`{key.split('.')[0]}." not in readme]
    assert not missing


def test_the_chart_ships_the_generated_crd():
    crds = list((CHART / "crds").glob("*.yaml"))
    assert [p.name for p in crds] == ["exchangepipelines.exchange.dev.yaml"]
    crd = yaml.safe_load(crds[0].read_text())
    assert crd["spec"]["group"] == "exchange.dev"
    assert crd["spec"]["names"]["kind"] == "ExchangePipeline"


def test_chart_metadata_is_complete():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "exchange-operator"
    assert chart["version"] and chart["appVersion"] and chart["kubeVersion"]
