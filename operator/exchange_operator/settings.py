"""Operator settings: a typed dataclass read once from the environment (12-factor)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields


@dataclass(frozen=True)
class OperatorSettings:
    """How the operator reconciles; every field has an `EXCHANGE_OPERATOR_<NAME>` variable."""

    field_manager: str = "exchange-operator"
    """Server-side apply field manager: who owns the fields of every child (and wins conflicts)."""
    resync_seconds: float = 60.0
    """Period of the timer that re-applies children and refreshes status (catches missed events)."""
    dependency_retry_seconds: float = 15.0
    """Retry delay while a referenced Secret is missing (kopf.TemporaryError)."""
    apply_concurrency: int = 16
    """Concurrent API requests per pipeline reconcile (SSA patches are independent)."""
    request_timeout_seconds: float = 30.0
    """Timeout of one API request; a slow API server becomes a retried TemporaryError."""
    namespaces: tuple[str, ...] = field(default_factory=tuple)
    """Namespaces to watch (comma-separated); empty watches the whole cluster."""
    finalizer: str = "exchange.dev/finalizer"
    """Finalizer kopf puts on each pipeline so deletion waits for the cleanup handler."""
    annotations_prefix: str = "exchange.dev"
    """Prefix of kopf's progress annotations (status stays a structural schema of our own)."""
    standalone: bool = True
    """Run without kopf peering (one operator replica; the chart runs exactly one)."""
    metrics_port: int = 0
    """Port of the operator's `/metrics` (reconciles, errors, durations); 0: not served."""

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> OperatorSettings:
        """Build from `EXCHANGE_OPERATOR_*` variables; unset ones keep their defaults."""
        env = dict(os.environ if environ is None else environ)
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(f"EXCHANGE_OPERATOR_{f.name.upper()}")
            if raw is None:
                continue
            default = getattr(cls(), f.name)
            if isinstance(default, bool):
                values[f.name] = raw.strip().lower() in {"1", "true", "yes", "on"}
            elif isinstance(default, tuple):
                values[f.name] = tuple(p.strip() for p in raw.split(",") if p.strip())
            elif isinstance(default, int):
                values[f.name] = int(raw)
            elif isinstance(default, float):
                values[f.name] = float(raw)
            else:
                values[f.name] = raw
        return cls(**values)  # type: ignore[arg-type]
