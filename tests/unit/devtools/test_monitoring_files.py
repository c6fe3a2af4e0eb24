"""The chart's rule file and dashboards are what exchange_devtools.monitoring builds (`make
monitoring`), and the fast variant of the rules used by the live test keeps their expressions."""

from __future__ import annotations

import json

import yaml

from exchange_devtools.monitoring import DASHBOARDS_DIR, generated, rules
from exchange_devtools.monitoring.dashboards import queries


def test_the_committed_rules_and_dashboards_are_up_to_date() -> None:
    stale = [str(path) for path, text in generated().items() if not path.exists() or path.read_text() != text]
    assert stale == [], "run `make monitoring`"
    assert {p.name for p in DASHBOARDS_DIR.glob("*.json")} == {p.name for p in generated() if p.suffix == ".json"}


def test_the_fast_rules_differ_from_the_shipped_ones_only_in_windows_and_thresholds() -> None:
    shipped, fast = rules.rule_groups(), rules.rule_groups(rules.Timings.fast())
    names = [[r.get("alert") or r.get("record") for r in g["rules"]] for g in shipped["groups"]]
    fast_names = [[r.get("alert") or r.get("record") for r in g["rules"]] for g in fast["groups"]]
    assert [[n.replace("5m", "15s") for n in g] for g in names] == fast_names
    slow_alerts = {r["alert"]: r["for"] for g in shipped["groups"] for r in g["rules"] if "alert" in r}
    fast_alerts = {r["alert"]: r["for"] for g in fast["groups"] for r in g["rules"] if "alert" in r}
    assert slow_alerts.keys() == fast_alerts.keys()
    assert all(fast_alerts[a].endswith("s") for a in fast_alerts)


def test_dashboards_are_grafana_json_with_queries_and_a_datasource_variable() -> None:
    for path, text in generated().items():
        if path.suffix != ".json":
            continue
        board = json.loads(text)
        assert board["uid"] == path.stem and board["title"].startswith("Exchange / ")
        assert [v["name"] for v in board["templating"]["list"]] == ["datasource"]
        found = list(queries(board))
        assert found and all(expr and "$" not in expr for _, expr in found), path.name
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids))


def test_no_dashboard_or_rule_groups_by_an_identifying_label() -> None:
    text = yaml.safe_dump(rules.rule_groups()) + "".join(generated().values())
    for label in ("record_id", "tenant", "event_id", "correlation_id", "subject"):
        assert label not in text
