"""kopf handlers: thin wiring from events to `reconcile`, and from its errors to kopf's retries.

- create / update / resume: reconcile, prune, write status. Invalid spec -> PermanentError
  (status Failed with the reason); missing referenced Secret -> TemporaryError(delay).
- timer: re-apply and refresh status every `resync_seconds` (readiness changes, missed events).
- child events: a child deleted or changed by another field manager -> the owner is reconciled
  at once (drift repair), coalesced per pipeline.
- health events: any change of an owned Deployment, StatefulSet, Job or Pod -> the owner's status
  is recomputed from its children (refresh.py), coalesced per pipeline: Ready when the last Pod
  is, Degraded when one crash-loops or cannot get its image.
- delete (finalizer): PVC retention policy, then kopf removes the finalizer.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from exchange_operator import metrics
from exchange_operator import reconcile as rc
from exchange_operator.apply import KubeApiError, KubeClient, credentials
from exchange_operator.builders.common import MANAGED_BY, PIPELINE_LABEL
from exchange_operator.refresh import refresh_status
from exchange_operator.settings import OperatorSettings
from exchange_operator.spec import GROUP, KIND, PLURAL, VERSION, Phase
from exchange_operator.status import problem_status

SETTINGS = OperatorSettings.from_env()
SERIALIZER = rc.Serializer()
STATUS_SERIALIZER = rc.Serializer()
CHILD_RESOURCES = (
    ("apps", "v1", "deployments"),
    ("apps", "v1", "statefulsets"),
    ("", "v1", "services"),
    ("", "v1", "configmaps"),
    ("networking.k8s.io", "v1", "ingresses"),
    ("networking.k8s.io", "v1", "networkpolicies"),
    ("policy", "v1", "poddisruptionbudgets"),
)
"""Children watched for drift, filtered by the API server (OWNED). Not Secrets: the operator reads
the few it needs by name and never lists or watches them, so it holds no copy of the cluster's
Secrets; a generated one deleted by someone else is re-created by the next resync. Not Jobs: they
are immutable and re-created by the next resync."""
HEALTH_RESOURCES = (
    ("apps", "v1", "deployments"),
    ("apps", "v1", "statefulsets"),
    ("batch", "v1", "jobs"),
    ("", "v1", "pods"),
)
"""Watched for status: what a pipeline's readiness and health are read from (also filtered by OWNED)."""
OWNED = f"app.kubernetes.io/managed-by={MANAGED_BY}"
API_RETRY_SECONDS = 5.0
Log = logging.Logger | logging.LoggerAdapter[Any]
DRIFT_FIELDS = frozenset({"f:spec", "f:data", "f:stringData", "f:type"})


@kopf.on.login()
def login(**_: Any) -> kopf.ConnectionInfo:
    """The credentials the operator's own client uses (apply.credentials), read now."""
    return credentials()


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = SETTINGS.finalizer
    prefix = SETTINGS.annotations_prefix
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=prefix)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=prefix, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING  # Events for failures, not for every success
    settings.peering.standalone = SETTINGS.standalone
    watch_only_owned(settings)
    memo.kube = KubeClient.from_environment(SETTINGS.request_timeout_seconds)


def watch_only_owned(settings: kopf.OperatorSettings) -> None:
    """The API server filters the child watches by label: the operator receives only its own
    children, not every Deployment or ConfigMap of the cluster (kopf's `labels=` alone filters
    after receiving them)."""
    for group, version, plural in {*CHILD_RESOURCES, *HEALTH_RESOURCES}:
        settings.watching.label_selectors[group, version, plural] = OWNED


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    kube: KubeClient | None = getattr(memo, "kube", None)
    if kube is not None:
        await kube.close()


async def _reconcile(
    kube: KubeClient, body: Mapping[str, Any], *, prune: bool, always: bool, trigger: str
) -> dict[str, Any] | None:
    uid = body["metadata"]["uid"]

    async def run() -> dict[str, Any]:
        with metrics.observed(trigger):
            return await rc.reconcile(kube, SETTINGS, body, prune_children=prune)

    return await SERIALIZER.run(uid, run, always=always)


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
async def reconcile_pipeline(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    """Reconcile a new or changed pipeline and write its status."""
    generation = body.metadata.get("generation")
    try:
        status = await _reconcile(memo.kube, body, prune=True, always=True, trigger="change")
    except rc.InvalidSpec as exc:
        patch.status.update(problem_status(Phase.FAILED, "InvalidSpec", str(exc), generation, body.status))
        raise kopf.PermanentError(f"invalid spec: {exc}") from None
    except rc.MissingDependency as exc:
        patch.status.update(problem_status(Phase.DEGRADED, "DependencyMissing", str(exc), generation, body.status))
        raise kopf.TemporaryError(str(exc), delay=SETTINGS.dependency_retry_seconds) from None
    except KubeApiError as exc:
        raise kopf.TemporaryError(f"API server: {exc}", delay=API_RETRY_SECONDS) from exc
    if status is not None:
        patch.status.update(status)


@kopf.timer(GROUP, VERSION, PLURAL, interval=SETTINGS.resync_seconds, initial_delay=SETTINGS.resync_seconds)
async def resync_pipeline(body: kopf.Body, patch: kopf.Patch, memo: Any, logger: Log, **_: Any) -> None:
    """Periodic drift repair and status refresh; problems are left to the change handlers."""
    try:
        status = await _reconcile(memo.kube, body, prune=False, always=True, trigger="resync")
    except (rc.InvalidSpec, rc.MissingDependency):
        return
    except KubeApiError as exc:
        logger.warning("resync failed: %s", exc)
        return
    if status is not None:
        patch.status.update(status)


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def delete_pipeline(body: kopf.Body, memo: Any, logger: Log, **_: Any) -> None:
    """Finalizer: apply the volume-claim policy; children go with their owner references."""
    try:
        with metrics.observed("delete"):
            outcome = await rc.cleanup(memo.kube, body)
    except rc.EnginesStillPresent as exc:
        raise kopf.TemporaryError(str(exc), delay=1) from exc
    except KubeApiError as exc:
        raise kopf.TemporaryError(f"API server: {exc}", delay=API_RETRY_SECONDS) from exc
    SERIALIZER.forget(body["metadata"]["uid"])
    STATUS_SERIALIZER.forget(f"{body.metadata.namespace}/{body.metadata.name}")
    logger.info("cleanup: %s", outcome)


def drifted(event_type: str | None, body: Mapping[str, Any], field_manager: str) -> bool:
    """A child was deleted, or a field manager other than ours owns part of its spec/data."""
    if event_type == "DELETED":
        return True
    if event_type != "MODIFIED":
        return False
    for entry in body.get("metadata", {}).get("managedFields") or []:
        if entry.get("manager") == field_manager or entry.get("subresource") == "status":
            continue
        if DRIFT_FIELDS & set((entry.get("fieldsV1") or {}).keys()):
            return True
    return False


def _is_drift(type: str | None, body: kopf.Body, **_: Any) -> bool:
    return drifted(type, body, SETTINGS.field_manager)


def owner_name(body: Mapping[str, Any]) -> str | None:
    for ref in body.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("kind") == KIND and str(ref.get("apiVersion", "")).startswith(f"{GROUP}/") and ref.get("controller"):
            return str(ref["name"])
    return None


async def on_child_event(event: kopf.RawEvent, body: kopf.Body, memo: Any, logger: Log, **_: Any) -> None:
    """Restore a pipeline's child that was deleted or edited by someone else."""
    name, namespace = owner_name(body), body.metadata.namespace
    if name is None or namespace is None:
        return
    kube: KubeClient = memo.kube
    try:
        owner = await kube.get(KIND, namespace, name)
        if owner is None or owner["metadata"].get("deletionTimestamp"):
            return
        status = await _reconcile(kube, owner, prune=False, always=False, trigger="drift")
        if status is not None:
            await kube.patch_status(namespace, name, status)
            logger.info("restored children of %s/%s after drift in %s", namespace, name, body.metadata.name)
    except (rc.InvalidSpec, rc.MissingDependency):
        return
    except KubeApiError as exc:
        logger.warning("drift repair of %s/%s failed: %s", namespace, name, exc)


for _group, _version, _plural in CHILD_RESOURCES:
    kopf.on.event(
        _group,
        _version,
        _plural,
        id=f"drift-{_plural}",
        labels={"app.kubernetes.io/managed-by": MANAGED_BY},  # also filtered server-side: watch_only_owned
        when=_is_drift,  # filtered before the handler runs: no log line per ordinary event
    )(on_child_event)


def pipeline_of(body: Mapping[str, Any]) -> str | None:
    """The pipeline a child or Pod belongs to (Pods carry the label, not an owner reference)."""
    value = (body.get("metadata", {}).get("labels") or {}).get(PIPELINE_LABEL)
    return str(value) if value else None


class StatusSeen:
    """The last status (and generation, deletion mark) seen of each watched object: an event that
    changed none of them (labels, annotations, managed fields) cannot change a pipeline's health."""

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}

    def changed(self, event_type: str | None, body: Mapping[str, Any]) -> bool:
        md = body.get("metadata", {})
        uid = str(md.get("uid", ""))
        if event_type == "DELETED":
            self._seen.pop(uid, None)
            return True
        seen = json.dumps([body.get("status"), md.get("generation"), md.get("deletionTimestamp")], sort_keys=True)
        if self._seen.get(uid) == seen:
            return False
        self._seen[uid] = seen
        return True


HEALTH_SEEN = StatusSeen()


def _health_changed(type: str | None, body: kopf.Body, **_: Any) -> bool:
    return HEALTH_SEEN.changed(type, body)


async def on_health_event(body: kopf.Body, memo: Any, logger: Log, **_: Any) -> None:
    """Recompute the status of the pipeline whose workload or Pod changed."""
    name, namespace = pipeline_of(body), body.metadata.namespace
    if name is None or namespace is None:
        return
    kube: KubeClient = memo.kube
    try:
        status = await STATUS_SERIALIZER.run(f"{namespace}/{name}", lambda: refresh_status(kube, namespace, name))
    except KubeApiError as exc:
        logger.warning("status refresh of %s/%s failed: %s", namespace, name, exc)
        return
    if status is not None:
        logger.info("%s/%s is %s: %s", namespace, name, status["phase"], status["message"])


for _group, _version, _plural in HEALTH_RESOURCES:
    kopf.on.event(
        _group,
        _version,
        _plural,
        id=f"health-{_plural}",
        labels={"app.kubernetes.io/managed-by": MANAGED_BY},  # also filtered server-side: watch_only_owned
        when=_health_changed,  # only events that changed a status: no API call or log line for the rest
    )(on_health_event)
