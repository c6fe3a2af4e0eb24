"""The shipped alert and recording rules: valid for promtool, and each one unit-tested with
`promtool test rules` (promtool/exchange-rules.test.yaml) at its shipped thresholds."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from exchange_devtools.engines.prometheus import promtool
from exchange_devtools.monitoring import RULES_FILE

TESTS = Path(__file__).parent / "promtool" / "exchange-rules.test.yaml"


def _promtool(*args: str, cwd: Path | None = None) -> str:
    out = subprocess.run([str(promtool()), *args], capture_output=True, text=True, timeout=120, cwd=cwd, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout + out.stderr


def test_the_shipped_rules_are_valid_for_promtool() -> None:
    assert "SUCCESS" in _promtool("check", "rules", str(RULES_FILE))


def test_the_promtool_unit_tests_of_the_rules_pass() -> None:
    assert "SUCCESS" in _promtool("test", "rules", TESTS.name, cwd=TESTS.parent)


def test_every_alert_and_recording_rule_has_a_promtool_test() -> None:
    rules = [r for g in yaml.safe_load(RULES_FILE.read_text())["groups"] for r in g["rules"]]
    suite = yaml.safe_load(TESTS.read_text())["tests"]
    tested_alerts = {t["alertname"] for case in suite for t in case.get("alert_rule_test", [])}
    firing = {t["alertname"] for case in suite for t in case.get("alert_rule_test", []) if t.get("exp_alerts")}
    exprs = " ".join(t["expr"] for case in suite for t in case.get("promql_expr_test", []))
    alerts = {r["alert"] for r in rules if "alert" in r}
    records = {r["record"] for r in rules if "record" in r}
    assert alerts - tested_alerts == set()
    assert alerts - firing == set(), "every alert has a case where it fires"
    used = set(re.findall(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", exprs))
    assert records - used == set()


def test_every_alert_carries_a_severity_summary_and_runbook() -> None:
    rules = [r for g in yaml.safe_load(RULES_FILE.read_text())["groups"] for r in g["rules"] if "alert" in r]
    assert len(rules) >= 8
    for rule in rules:
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["alert"]
