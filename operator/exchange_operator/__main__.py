"""`python -m exchange_operator`: run the operator against $KUBECONFIG (or in-cluster).

Watches the namespaces in EXCHANGE_OPERATOR_NAMESPACES (comma-separated), else the whole cluster.
EXCHANGE_OPERATOR_LIVENESS=http://0.0.0.0:8080/healthz serves kopf's liveness endpoint, and
EXCHANGE_OPERATOR_METRICS_PORT the operator's Prometheus metrics (`/metrics`; unset or 0: none).
"""

from __future__ import annotations

import logging
import os

import kopf

from exchange_operator import handlers, metrics


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("EXCHANGE_OPERATOR_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    namespaces = handlers.SETTINGS.namespaces
    if handlers.SETTINGS.metrics_port:
        metrics.serve(handlers.SETTINGS.metrics_port)
    kopf.run(
        standalone=handlers.SETTINGS.standalone,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=os.environ.get("EXCHANGE_OPERATOR_LIVENESS") or None,
    )


if __name__ == "__main__":
    main()
