"""Grafana dashboards of the platform, built from code (schema 39 JSON, a Prometheus datasource
variable), shipped by the chart as ConfigMaps labelled `grafana_dashboard`.

Panel queries use no Grafana variable but the datasource, so a test can run each one as it is
against a real Prometheus (tests/integration/observability). A ratio whose numerator may have
no series yet (no 5xx, no dead letter) adds `or ... * 0`, so the panel shows 0, not "No data".
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from exchange_devtools.monitoring.rules import BY, NOT_PROBES

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


@dataclass(frozen=True)
class Panel:
    title: str
    exprs: tuple[tuple[str, str], ...]
    """(query, legend) pairs."""
    unit: str = "short"
    kind: str = "timeseries"
    description: str = ""


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...] = field(default_factory=tuple)


def _rate(metric: str, selector: str = "", by: str = "service", window: str = "5m") -> str:
    return f"sum by ({by}) (rate({metric}{{{selector}}}[{window}]))"


_REQ = f"http_requests_total{{{NOT_PROBES}}}"
_5XX = f'http_requests_total{{{NOT_PROBES}, status=~"5.."}}'


def _ratio_5xx(by: str) -> str:
    total = f"sum by ({by}) (rate({_REQ}[5m]))"
    return f"(sum by ({by}) (rate({_5XX}[5m])) or {total} * 0) / {total}"


def _p(q: float, by: str, selector: str = NOT_PROBES, metric: str = "http_request_duration_seconds") -> str:
    return f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}_bucket{{{selector}}}[5m])))"


DASHBOARDS = (
    Dashboard(
        "exchange-overview",
        "Exchange / Overview",
        "Every service at a glance: up, requests, errors, latency, backlog and lag.",
        (
            Panel("Targets up", (('sum by (service) (up{service!=""})', "{{service}}"),), kind="stat"),
            Panel("Requests/s by service", ((f"sum by (service) (rate({_REQ}[5m]))", "{{service}}"),), "reqps"),
            Panel("5xx ratio by service", ((_ratio_5xx("service"), "{{service}}"),), "percentunit"),
            Panel("p99 latency by service", ((_p(0.99, "service"), "{{service}}"),), "s"),
            Panel("Outbox backlog", (("max(ingest_outbox_backlog)", "rows"),)),
            Panel("Consumer lag", (("sum(normalizer_consumer_lag)", "messages"),)),
            Panel(
                "Postgres transactions/s",
                (
                    ('sum(rate(pg_stat_database_xact_commit{service="postgres"}[5m]))', "commits"),
                    ('sum(rate(pg_stat_database_xact_rollback{service="postgres"}[5m]))', "rollbacks"),
                ),
                "ops",
            ),
            Panel(
                "Postgres connections by state",
                (('sum by (state) (pg_stat_activity_count{service="postgres"})', "{{state}}"),),
            ),
        ),
    ),
    Dashboard(
        "exchange-ingest",
        "Exchange / Ingest",
        "Ingest's RED metrics per route, records accepted, group commits.",
        (
            Panel(
                "Requests/s by route and status",
                (
                    (
                        f'sum by (route, status) (rate(http_requests_total{{service="ingest", {NOT_PROBES}}}[5m]))',
                        "{{route}} {{status}}",
                    ),
                ),
                "reqps",
            ),
            Panel(
                "Latency by route",
                (
                    (_p(0.5, "route", f'service="ingest", {NOT_PROBES}'), "p50 {{route}}"),
                    (_p(0.99, "route", f'service="ingest", {NOT_PROBES}'), "p99 {{route}}"),
                ),
                "s",
            ),
            Panel(
                "5xx ratio", ((_ratio_5xx("service") + ' and on (service) up{service="ingest"}', "5xx"),), "percentunit"
            ),
            Panel(
                "Records accepted/s by format",
                ((_rate("ingest_records_total", by="source_format"), "{{source_format}}"),),
            ),
            Panel(
                "Requests per group commit",
                (
                    (
                        "sum by (statement) (rate(ingest_db_batch_requests_sum[5m])) / "
                        "sum by (statement) (rate(ingest_db_batch_requests_count[5m]))",
                        "{{statement}}",
                    ),
                ),
            ),
        ),
    ),
    Dashboard(
        "exchange-pipeline-lag",
        "Exchange / Pipeline lag",
        "Where records wait: ingest's outbox, the relay, Kafka, the normalizer.",
        (
            Panel("Outbox backlog", ((f"max by ({BY}) (ingest_outbox_backlog)", "{{pipeline}}"),)),
            Panel(
                "Oldest unpublished event",
                ((f"max by ({BY}) (ingest_outbox_oldest_unpublished_age_seconds)", "{{pipeline}}"),),
                "s",
            ),
            Panel(
                "Relay published/s",
                (
                    ("sum(rate(ingest_relay_published_total[5m]))", "events"),
                    ("sum(rate(ingest_relay_publish_errors_total[5m]))", "errors"),
                ),
            ),
            Panel(
                "Consumer lag by partition",
                (("sum by (topic, partition) (normalizer_consumer_lag)", "{{topic}}/{{partition}}"),),
            ),
            Panel("Normalizer paused", (("max(normalizer_paused)", "paused"),)),
        ),
    ),
    Dashboard(
        "exchange-normalizer",
        "Exchange / Normalizer and DLQ",
        "Records/s by outcome, dead letters, retries, tokenizer calls.",
        (
            Panel("Records/s by outcome", ((_rate("normalizer_events_total", by="outcome"), "{{outcome}}"),), "ops"),
            Panel("Dead letters", (("sum by (error_class) (normalizer_dlq_total)", "{{error_class}}"),)),
            Panel("Batch time p99", ((_p(0.99, "service", "", "normalizer_batch_seconds"), "p99"),), "s"),
            Panel(
                "Tokenizer call latency (normalizer's view)",
                (
                    (_p(0.5, "outcome", "", "normalizer_tokenizer_request_seconds"), "p50 {{outcome}}"),
                    (_p(0.99, "outcome", "", "normalizer_tokenizer_request_seconds"), "p99 {{outcome}}"),
                ),
                "s",
            ),
            Panel("Tokenizer records/s", (("sum(rate(tokenizer_records_total[5m]))", "records"),), "ops"),
            Panel(
                "Transient retries/s by dependency",
                (
                    (
                        "sum by (dependency) (rate(normalizer_transient_retries_total[5m])) or vector(0)",
                        "{{dependency}}",
                    ),
                ),
            ),
        ),
    ),
    Dashboard(
        "exchange-operator",
        "Exchange / Operator",
        "Reconciles by trigger and result, errors, durations.",
        (
            Panel(
                "Reconciles/s",
                ((_rate("exchange_operator_reconciles_total", by="trigger, result"), "{{trigger}} {{result}}"),),
                "ops",
            ),
            Panel(
                "Reconcile errors",
                (("sum by (reason) (exchange_operator_reconcile_errors_total) or vector(0)", "{{reason}}"),),
            ),
            Panel(
                "Reconcile duration p99",
                ((_p(0.99, "trigger", "", "exchange_operator_reconcile_duration_seconds"), "{{trigger}}"),),
                "s",
            ),
        ),
    ),
)


def queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, query) of every panel target of a dashboard's JSON."""
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def build(d: Dashboard) -> dict[str, Any]:
    """A dashboard's JSON model: two panels a row, 8 units high."""
    panels = []
    for i, p in enumerate(d.panels):
        panels.append(
            {
                "id": i + 1,
                "type": p.kind,
                "title": p.title,
                "description": p.description,
                "datasource": DATASOURCE,
                "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
                "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom"}} if p.kind == "timeseries" else {},
                "targets": [
                    {"refId": chr(ord("A") + j), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend}
                    for j, (expr, legend) in enumerate(p.exprs)
                ],
            }
        )
    return {
        "uid": d.uid,
        "title": d.title,
        "description": d.description,
        "tags": ["exchange"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "type": "datasource",
                    "query": "prometheus",
                    "label": "Data source",
                    "current": {},
                    "hide": 0,
                },
            ]
        },
        "panels": panels,
    }


def render_all() -> dict[str, str]:
    """Dashboard uid -> its JSON text."""
    return {d.uid: json.dumps(build(d), indent=2, sort_keys=True) + "\n" for d in DASHBOARDS}
