"""The platform's Prometheus recording and alert rules, built from code.

`rule_groups(Timings())` is what the chart ships (`charts/exchange-operator/files/prometheus/
exchange-rules.yaml`: as a PrometheusRule, and as a plain rule file `make dev`'s Prometheus loads);
a test fails when that file differs from this. The live alert test builds the very same
expressions with short windows (`Timings.fast()`), so an alert can fire within seconds.

Every series carries `service` (the scrape target's job: the dev scrape configuration and the
operator's PodMonitor set it); aggregations keep `namespace` and `pipeline` so that one alert is
one pipeline. Alert annotations carry a summary, a description and a runbook line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

BY = "namespace, pipeline"
SERVICES = ("ingest", "relay", "tokenizer", "normalizer", "query")
NOT_PROBES = 'route!~"/healthz|/readyz|/metrics"'


@dataclass(frozen=True)
class Timings:
    """Windows, `for` durations and thresholds of the rules (the shipped values by default)."""

    rate_window: str = "5m"
    """Window of the request rates, ratios and latency quantiles."""
    growth_window: str = "10m"
    """Window over which a backlog or a lag must have grown."""
    growing_for: str = "10m"
    """How long a backlog or lag keeps growing before its alert fires."""
    outbox_max_age_seconds: int = 300
    """Oldest unpublished outbox row older than this: events are not reaching Kafka."""
    stale_for: str = "1m"
    """How long the oldest unpublished row stays too old before the alert fires."""
    lag_min: int = 1000
    """A growing lag below this many messages is ordinary burstiness."""
    dlq_window: str = "10m"
    """Any dead letter in this window fires the DLQ alert."""
    error_ratio: float = 0.05
    """Share of ingest's requests answered 5xx that pages."""
    errors_for: str = "5m"
    """How long an error condition lasts before its alert fires."""
    p99_seconds: float = 1.0
    """p99 latency of an API route above which the latency alert fires."""
    latency_for: str = "10m"
    """How long p99 stays too high before the latency alert fires."""
    down_for: str = "2m"
    """How long a scrape target is down before the alert fires."""
    retention_slack_seconds: int = 3600
    """A bounded table's oldest row older than its retention by more than this: its job is not running."""
    behind_for: str = "30m"
    """How long a table stays behind its retention before the alert fires."""

    @classmethod
    def fast(cls) -> Timings:
        """Seconds instead of minutes, for a live test against a Prometheus scraping every second."""
        return cls(
            rate_window="15s", growth_window="15s", growing_for="5s", outbox_max_age_seconds=10, stale_for="3s",
            lag_min=0, dlq_window="30s", errors_for="5s", latency_for="5s", down_for="5s",
            retention_slack_seconds=10, behind_for="5s",
        )  # fmt: skip


def recording_rules(t: Timings) -> list[dict[str, Any]]:
    w = t.rate_window
    return [
        {
            "record": "service_route:http_requests:rate" + w,
            "expr": f"sum by ({BY}, service, route, status) (rate(http_requests_total{{{NOT_PROBES}}}[{w}]))",
        },
        {
            "record": "service:http_requests_5xx:ratio_rate" + w,
            "expr": f'sum by ({BY}, service) (rate(http_requests_total{{{NOT_PROBES}, status=~"5.."}}[{w}]))\n'
            f"/\nsum by ({BY}, service) (rate(http_requests_total{{{NOT_PROBES}}}[{w}]))",
        },
        {
            "record": "service_route:http_request_duration_seconds:p99_" + w,
            "expr": f"histogram_quantile(0.99, sum by ({BY}, service, route, le) "
            f"(rate(http_request_duration_seconds_bucket{{{NOT_PROBES}}}[{w}])))",
        },
        {"record": "pipeline:outbox_backlog:max", "expr": f"max by ({BY}) (ingest_outbox_backlog)"},
        {
            "record": "pipeline:outbox_oldest_unpublished_age_seconds:max",
            "expr": f"max by ({BY}) (ingest_outbox_oldest_unpublished_age_seconds)",
        },
        {"record": "pipeline:normalizer_consumer_lag:sum", "expr": f"sum by ({BY}) (normalizer_consumer_lag)"},
        {
            "record": "outcome:normalizer_events:rate" + w,
            "expr": f"sum by ({BY}, outcome) (rate(normalizer_events_total[{w}]))",
        },
        {
            "record": "pipeline:normalizer_tokenizer_request_seconds:p99_" + w,
            "expr": f"histogram_quantile(0.99, sum by ({BY}, le) "
            f"(rate(normalizer_tokenizer_request_seconds_bucket[{w}])))",
        },
    ]


def _alert(
    name: str, expr: str, for_: str, severity: str, summary: str, description: str, runbook: str
) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": for_,
        "labels": {"severity": severity},
        "annotations": {"summary": summary, "description": description, "runbook": runbook},
    }


def alert_rules(t: Timings) -> list[dict[str, Any]]:
    w = t.rate_window
    return [
        _alert(
            "ExchangeOutboxBacklogGrowing",
            f"pipeline:outbox_backlog:max > 0 and delta(pipeline:outbox_backlog:max[{t.growth_window}]) > 0",
            t.growing_for,
            "warning",
            "Ingest's outbox is growing: accepted records are not being published",
            "{{ $value }} outbox rows of {{ $labels.pipeline }} wait to be published, more than "
            + t.growth_window
            + " ago.",
            "Is Kafka up and the relay ready (its /readyz names what is missing)? The outbox keeps every event "
            "until it is published: nothing is lost, the normalized data is late.",
        ),
        _alert(
            "ExchangeOutboxStale",
            f"pipeline:outbox_oldest_unpublished_age_seconds:max > {t.outbox_max_age_seconds}",
            t.stale_for,
            "critical",
            "The oldest unpublished outbox event is older than " + str(t.outbox_max_age_seconds) + " s",
            "The oldest unpublished event of {{ $labels.pipeline }} is {{ $value | humanizeDuration }} old.",
            "The relay cannot publish: check Kafka and the relay's log (relay_publish_failed). Events wait in the "
            "outbox and go out in order once Kafka answers.",
        ),
        _alert(
            "ExchangeConsumerLagGrowing",
            f"pipeline:normalizer_consumer_lag:sum > {t.lag_min}"
            f" and delta(pipeline:normalizer_consumer_lag:sum[{t.growth_window}]) > 0",
            t.growing_for,
            "warning",
            "The normalizer is falling behind record.ingested.v1",
            "The normalizer of {{ $labels.pipeline }} is {{ $value }} messages behind, more than "
            + t.growth_window
            + " ago.",
            "Is the normalizer backing off (normalizer_paused, normalizer_transient_retries_total by dependency: "
            "tokenizer, Postgres, S3)? Otherwise scale it, up to the topic's partitions.",
        ),
        _alert(
            "ExchangeDLQReceiving",
            f"sum by ({BY}, error_class) (increase(normalizer_dlq_total[{t.dlq_window}])) > 0",
            "0s",
            "warning",
            "Records are being dead-lettered ({{ $labels.error_class }})",
            "Events of {{ $labels.pipeline }} went to record.ingested.v1.dlq in the last " + t.dlq_window + ".",
            "Read the DLQ headers (error class, PII-free message); fix the mapping or the partner, then "
            "`exchange dlq replay`.",
        ),
        _alert(
            "ExchangeIngest5xxRatio",
            f'service:http_requests_5xx:ratio_rate{w}{{service="ingest"}} > {t.error_ratio}',
            t.errors_for,
            "critical",
            "Ingest answers more than " + f"{t.error_ratio:.0%}" + " of its requests with 5xx",
            "{{ $value | humanizePercentage }} of ingest's requests failed in {{ $labels.pipeline }}.",
            "Ingest's /readyz names the dependency it lacks (Postgres, S3); its log has the error classes.",
        ),
        _alert(
            "ExchangeLatencyP99High",
            f"max by ({BY}, service, route) (service_route:http_request_duration_seconds:p99_{w}"
            f'{{service=~"ingest|query|tokenizer", route!~".*/bulk"}}) > {t.p99_seconds}',
            t.latency_for,
            "warning",
            "p99 latency of {{ $labels.service }} {{ $labels.route }} is above " + f"{t.p99_seconds:g}" + " s",
            "p99 is {{ $value | humanizeDuration }} in {{ $labels.pipeline }}.",
            "Compare with Postgres and S3 latency and the service's CPU; ingest group-commits, so a slow "
            "database shows on every request.",
        ),
        _alert(
            "ExchangeServiceDown",
            f'up{{service=~"{"|".join(SERVICES)}"}} == 0',
            t.down_for,
            "critical",
            "{{ $labels.service }} cannot be scraped",
            "{{ $labels.instance }} of {{ $labels.service }} in {{ $labels.pipeline }} did not answer /metrics.",
            "Look at the Pod (kubectl describe, its log) or, locally, .dev/services/<service>.log.",
        ),
        _alert(
            "ExchangePostgresUnreachable",
            f"max by ({BY}, instance) (pg_up) == 0",
            t.down_for,
            "critical",
            "postgres_exporter cannot reach Postgres",
            "{{ $labels.instance }} in {{ $labels.pipeline }} reports pg_up 0: every service's writes fail.",
            "Is the Postgres process or Pod running and accepting connections (its log, disk space)? The "
            "services' /readyz name it too.",
        ),
        _alert(
            "ExchangeTokenizerErrors",
            f'sum by ({BY}) (rate(http_requests_total{{service="tokenizer", status=~"5.."}}[{w}])) > 0\n'
            f'or sum by ({BY}) (rate(normalizer_tokenizer_request_seconds_count{{outcome!="ok"}}[{w}])) > 0',
            t.errors_for,
            "warning",
            "Tokenizer calls are failing",
            "The tokenizer answers 5xx, or the normalizer's calls to it fail, in {{ $labels.pipeline }}.",
            "The normalizer backs off and retries (no record is lost); check the tokenizer's /readyz, its "
            "secret, and the normalizer's credentials (401/403 after a rotation).",
        ),
        _alert(
            "ExchangeTableRetentionBehind",
            f"max by ({BY}, table) (exchange_table_oldest_row_age_seconds - exchange_table_retention_seconds)"
            f" > {t.retention_slack_seconds}",
            t.behind_for,
            "warning",
            "{{ $labels.table }} keeps rows past its retention",
            "The oldest row of {{ $labels.table }} in {{ $labels.pipeline }} is {{ $value | humanizeDuration }} "
            "past its retention.",
            "The process that owns the table logs retention_failed with an error class; `exchange retention run "
            "ingest|normalizer --dry-run` counts what is due (ADR 0013). An outbox keeps unpublished rows however "
            "old: see ExchangeOutboxStale first.",
        ),
        _alert(
            "ExchangeOperatorReconcileErrors",
            f"sum by (namespace) (increase(exchange_operator_reconcile_errors_total[{t.growth_window}])) > 0",
            t.growing_for,
            "warning",
            "The operator keeps failing to reconcile pipelines",
            "{{ $value | humanize }} failed reconciles in " + t.growth_window + ".",
            "kubectl get exchangepipelines shows the phase and message; the operator's log names the child.",
        ),
    ]


def rule_groups(t: Timings | None = None) -> dict[str, Any]:
    """The rule file's content: one group, the recording rules first. Rules of one group are
    evaluated in order, so an alert reads the recording of the same evaluation (two groups run
    independently, and an alert's value was one evaluation old or not, at random)."""
    t = t or Timings()
    return {"groups": [{"name": "exchange", "rules": [*recording_rules(t), *alert_rules(t)]}]}


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (expressions) as literal blocks, as people write rule files."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render(t: Timings | None = None) -> str:
    """The rule file as YAML text (what the chart ships)."""
    header = "# Generated by `make monitoring` from hack/exchange_devtools/monitoring/rules.py: edit that.\n"
    return header + yaml.dump(rule_groups(t), Dumper=_Dumper, sort_keys=False, width=120)
