"""The operator's Kubernetes client A/B behind `hack/bench/kubeclient` (see that script for usage).

(a) the operator's own aiohttp `KubeClient` (the baseline) against (b) the same interface on
lightkube's `AsyncClient` with generic resources (`LightkubeClient` below), on one real etcd +
kube-apiserver: server-side apply of a default pipeline's children (first apply and a no-change
re-apply, concurrent as a reconcile applies them) and a whole `reconcile()` (first and no-change).
Each repeat runs both clients, in alternating order, on fresh pipelines.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from lightkube import ApiError, AsyncClient
from lightkube.config.kubeconfig import KubeConfig
from lightkube.generic_resource import create_namespaced_resource
from lightkube.types import PatchType

from exchange_devtools.calibrate import machine_speed
from exchange_devtools.engines.kube import start_control_plane
from exchange_devtools.fixtures.operator_process import install_crd
from exchange_operator import reconcile as rc
from exchange_operator.apply import RESOURCES, KubeApiError, KubeClient, adopt_all, apply_all
from exchange_operator.builders import Meta, build_children
from exchange_operator.builders.secrets import build_generated_secrets
from exchange_operator.settings import OperatorSettings
from exchange_operator.spec import GROUP, KIND, PLURAL, VERSION, parse_spec

Manifest = dict[str, Any]
SETTINGS = OperatorSettings()
SWITCH_RATIO = 1.2
"""Issue 24's rule: the operator switches to lightkube if a reconcile costs at most 20 % more with it."""


def _resource(kind: str) -> Any:
    prefix, plural = RESOURCES[kind]
    parts = prefix.split("/")  # api/v1 or apis/<group>/<version>
    group, version = ("", parts[1]) if parts[0] == "api" else (parts[1], parts[2])
    return create_namespaced_resource(group, version, kind, plural)


class LightkubeClient:
    """`KubeClient`'s interface on lightkube: what the operator would run after a switch."""

    def __init__(self, kubeconfig: Path, timeout: float = 30.0) -> None:
        import httpx2

        self._client = AsyncClient(KubeConfig.from_file(kubeconfig), timeout=httpx2.Timeout(timeout))
        self._res = {kind: _resource(kind) for kind in RESOURCES}

    async def close(self) -> None:
        await self._client.close()

    @staticmethod
    def _error(exc: ApiError) -> KubeApiError:
        return KubeApiError(exc.status.code or 0, exc.status.reason or "", exc.status.message or "")

    async def apply(self, manifest: Manifest, field_manager: str, force: bool = True) -> Manifest:
        md = manifest["metadata"]
        try:
            result = await self._client.patch(
                self._res[manifest["kind"]],
                md["name"],
                manifest,
                namespace=md["namespace"],
                patch_type=PatchType.APPLY,
                field_manager=field_manager,
                force=force,
            )
        except ApiError as exc:
            raise self._error(exc) from None
        return dict(result)

    async def create(self, manifest: Manifest, field_manager: str) -> Manifest | None:
        res = self._res[manifest["kind"]]
        try:
            result = await self._client.create(res(manifest), field_manager=field_manager)
        except ApiError as exc:
            if exc.status.code == 409:
                return None
            raise self._error(exc) from None
        return dict(result)

    async def serves(self, kind: str) -> bool:
        prefix, plural = RESOURCES[kind]
        try:
            resp = await self._client._client._client.get("/" + prefix)  # lightkube has no discovery call
        except Exception:
            return False
        return resp.status_code == 200 and any(r.get("name") == plural for r in resp.json().get("resources", []))

    async def get(self, kind: str, namespace: str, name: str) -> Manifest | None:
        try:
            return dict(await self._client.get(self._res[kind], name, namespace=namespace))
        except ApiError as exc:
            if exc.status.code == 404:
                return None
            raise self._error(exc) from None

    async def list(self, kind: str, namespace: str, label_selector: str) -> list[Manifest]:
        labels: dict[str, Any] = dict(p.split("=", 1) for p in label_selector.split(","))
        try:
            return [dict(o) async for o in self._client.list(self._res[kind], namespace=namespace, labels=labels)]
        except ApiError as exc:
            raise self._error(exc) from None

    async def delete(self, kind: str, namespace: str, name: str) -> bool:
        try:
            await self._client.delete(self._res[kind], name, namespace=namespace)
        except ApiError as exc:
            if exc.status.code == 404:
                return False
            raise self._error(exc) from None
        return True


Client = KubeClient | LightkubeClient


def children(ns: str, name: str, uid: str) -> list[Manifest]:
    spec, meta = parse_spec({}), Meta(name, ns)
    owner = {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "metadata": {"name": name, "namespace": ns, "uid": uid}}
    return adopt_all(build_generated_secrets(spec, meta, {}) + build_children(spec, meta), owner)


async def timed(fn: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds): the API server runs in other processes."""
    wall, cpu = time.monotonic(), time.process_time()
    await fn()
    return time.monotonic() - wall, time.process_time() - cpu


async def one_round(kube: Client, api: Any, ns: str) -> dict[str, tuple[float, float]]:
    """Apply a fresh pipeline's children twice, then reconcile a fresh pipeline twice."""
    objs = children(ns, f"a{uuid.uuid4().hex[:6]}", str(uuid.uuid4()))
    out = {
        "apply, first": await timed(lambda: apply_all(kube, objs, "bench", SETTINGS.apply_concurrency)),  # type: ignore[arg-type]
        "apply, no change": await timed(lambda: apply_all(kube, objs, "bench", SETTINGS.apply_concurrency)),  # type: ignore[arg-type]
    }
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": f"r{uuid.uuid4().hex[:6]}"},
        "spec": {},
    }
    created: Any = k8s.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
    body = created
    out["reconcile, first"] = await timed(lambda: rc.reconcile(kube, SETTINGS, body))  # type: ignore[arg-type]
    out["reconcile, no change"] = await timed(lambda: rc.reconcile(kube, SETTINGS, body))  # type: ignore[arg-type]
    return out


def release(api: Any, ns: str) -> None:
    """No controllers run: delete the Services by hand so the /24 service range never fills."""
    core: Any = k8s.CoreV1Api(api)
    for svc in core.list_namespaced_service(ns).items:
        core.delete_namespaced_service(svc.metadata.name, ns)


async def run(kubeconfig: Path, api: Any, repeat: int) -> dict[str, dict[str, list[tuple[float, float]]]]:
    os.environ["KUBECONFIG"] = str(kubeconfig)
    clients: dict[str, Client] = {"aiohttp": KubeClient.from_environment(), "lightkube": LightkubeClient(kubeconfig)}
    results: dict[str, dict[str, list[tuple[float, float]]]] = {name: {} for name in clients}
    ns = f"bench-{uuid.uuid4().hex[:6]}"
    core: Any = k8s.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": ns}})
    try:
        for kube in clients.values():  # connections and lazy set-up outside the timings
            await kube.get("Secret", ns, "absent")
        for i in range(repeat):
            order = list(clients) if i % 2 == 0 else list(reversed(clients))
            for name in order:
                for case, figures in (await one_round(clients[name], api, ns)).items():
                    results[name].setdefault(case, []).append(figures)
                release(api, ns)
    finally:
        for kube in clients.values():
            await kube.close()
    return results


def report(results: Mapping[str, Mapping[str, list[tuple[float, float]]]], repeat: int, n_children: int) -> None:
    base, other = results["aiohttp"], results["lightkube"]
    print(
        f"\nserver-side apply of {n_children} children, medians of {repeat} ({os.cpu_count()} cores, load"
        f" {os.getloadavg()[0]:.1f}; {machine_speed()})"
    )
    print(
        f"{'case':<24}{'aiohttp s':>11}{'lightkube s':>13}{'ratio':>7}"
        f"{'aiohttp cpu':>13}{'lightkube cpu':>15}{'ratio':>7}"
    )
    for case in base:
        (bw, bc), (ow, oc) = (tuple(statistics.median(x) for x in zip(*r[case], strict=True)) for r in (base, other))
        print(f"{case:<24}{bw:>11.3f}{ow:>13.3f}{ow / bw:>7.2f}{bc:>13.3f}{oc:>15.3f}{oc / bc:>7.2f}")
    print("ratio = lightkube / aiohttp (the baseline); cpu = this process's CPU seconds (the client's cost)")
    cases = [c for c in base if c.startswith("reconcile")]
    wall, cpu = (
        statistics.median(sum(o[c][i][k] for c in cases) / sum(b[c][i][k] for c in cases) for i in range(repeat))
        for b, o, k in ((base, other, 0), (base, other, 1))
    )
    verdict = "lightkube within the 20 %" if wall <= SWITCH_RATIO else "lightkube costs more than 20 %"
    print(
        f"whole reconcile (first + no change), median of per-repeat ratios: wall {wall:.2f}, cpu {cpu:.2f}: {verdict}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=6, help="rounds per client (alternating order)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-kubeclient-") as tmp:
        plane = start_control_plane(Path(tmp) / "kube")
        try:
            api = k8s_config.new_client_from_config(config_file=str(plane.kubeconfig))  # type: ignore[no-untyped-call]
            install_crd(api)
            results = asyncio.run(run(plane.kubeconfig, api, args.repeat))
        finally:
            plane.stop()
    report(results, args.repeat, len(children("ns", "x", "u")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
