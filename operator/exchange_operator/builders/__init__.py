"""Pure builders: `(spec, meta) -> manifest dict`, one module per concern, no API calls.

`build_children` is everything a pipeline owns except the generated Secrets, whose content depends
on what already exists (see builders.secrets) and which the handler builds separately.
"""

from __future__ import annotations

from exchange_operator.builders.common import Manifest, Meta
from exchange_operator.builders.configmaps import build_config_map, build_postgres_init_config_map
from exchange_operator.builders.deployments import build_deployments
from exchange_operator.builders.identity import build_service_accounts
from exchange_operator.builders.ingress import build_ingresses
from exchange_operator.builders.jobs import build_jobs
from exchange_operator.builders.monitoring import build_monitoring
from exchange_operator.builders.network import build_network_policies
from exchange_operator.builders.pdb import build_pdbs
from exchange_operator.builders.services import build_services
from exchange_operator.builders.statefulsets import build_statefulsets
from exchange_operator.spec import ExchangePipelineSpec

__all__ = ["Manifest", "Meta", "build_children"]


def build_children(spec: ExchangePipelineSpec, meta: Meta, *, prometheus_operator: bool = False) -> list[Manifest]:
    """Every child except generated Secrets, in apply order (config before workloads).
    `prometheus_operator`: the cluster has the Prometheus Operator's CRDs (a PodMonitor is built)."""
    init = build_postgres_init_config_map(spec, meta)
    return [
        build_config_map(spec, meta),
        *([init] if init else []),
        *build_services(spec, meta),
        *build_network_policies(spec, meta),
        *build_service_accounts(spec, meta),
        *build_statefulsets(spec, meta),
        *build_deployments(spec, meta),
        *build_pdbs(spec, meta),
        *build_ingresses(spec, meta),
        *build_jobs(spec, meta),
        *build_monitoring(spec, meta, prometheus_operator=prometheus_operator),
    ]
