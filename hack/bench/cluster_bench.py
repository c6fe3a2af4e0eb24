"""The local node benchmark behind `hack/bench/cluster` (see that script for usage)."""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from exchange_devtools import kube_addons, kube_stack
from exchange_devtools.engines.base import CACHE_DIR, REPO_ROOT
from exchange_devtools.engines.kube import KUBECTL_BIN, start_control_plane
from exchange_devtools.engines.kube_node import NODE_NAME

SERVICES_IMAGE = "localhost/exchange:dev"


def sh(*argv: str, timeout: float = 1800) -> str:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if out.returncode != 0:
        sys.exit(f"{' '.join(argv[:4])} failed: {(out.stderr or out.stdout)[-800:]}")
    return out.stdout


def timed(step: str, *argv: str) -> float:
    started = time.monotonic()
    sh(*argv)
    seconds = time.monotonic() - started
    print(f"  {step}: {seconds:.1f}s", flush=True)
    return seconds


def kube_up() -> dict[str, float]:
    """Seconds from the start of `kube-up` to node Ready, CoreDNS answering, and the end."""
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "exchange_devtools", "kube-up"], stdout=subprocess.PIPE, text=True)
    marks: dict[str, float] = {}
    while proc.poll() is None:
        if "node Ready" not in marks and kube_stack.KUBECONFIG.exists() and _quiet(kube_stack.node_ready):
            marks["node Ready"] = time.monotonic() - started
        if (
            "node Ready" in marks
            and "dns" not in marks
            and kube_addons.dns_answers("kubernetes.default.svc.cluster.local")
        ):
            marks["CoreDNS answers"] = time.monotonic() - started
            marks["dns"] = 0
        time.sleep(0.1)
    assert proc.stdout is not None
    if proc.returncode != 0:
        sys.exit(f"kube-up failed: {proc.stdout.read()[-800:]}")
    marks.pop("dns", None)
    marks["kube-up returns"] = time.monotonic() - started
    return marks


def _quiet(probe: object) -> bool:
    try:
        return bool(probe())  # type: ignore[operator]
    except Exception:
        return False


def apiserver_alone() -> float:
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        started = time.monotonic()
        plane = start_control_plane(Path(tmp))
        seconds = time.monotonic() - started
        plane.stop()
    return seconds


def deployment(name: str, image: str, args: list[str], replicas: int) -> dict[str, object]:
    container: dict[str, object] = {"name": name, "image": image, "imagePullPolicy": "IfNotPresent", "args": args}
    if image == SERVICES_IMAGE:
        container["env"] = [
            {"name": "ENV", "value": "local"},
            {"name": "HOST", "value": "0.0.0.0"},
            {"name": "TOKENIZATION_SECRET", "value": "bench-secret-not-a-real-one-0123456789abcdef"},
        ]
        container["readinessProbe"] = {"httpGet": {"path": "/readyz", "port": 8082}, "periodSeconds": 1}
    else:
        container["command"] = ["/bin/sh", "-c"]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "bench"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [container]}},
        },
    }


def rollout(manifest: dict[str, object]) -> float:
    name = str(manifest["metadata"]["name"])  # type: ignore[index]
    started = time.monotonic()
    subprocess.run(
        [str(KUBECTL_BIN), f"--kubeconfig={kube_stack.KUBECONFIG}", "apply", "-f", "-"],
        input=json.dumps(manifest),
        text=True,
        capture_output=True,
        check=True,
    )
    kube_stack.kubectl("-n", "bench", "rollout", "status", f"deployment/{name}", "--timeout=300s", timeout=310)
    seconds = time.monotonic() - started
    kube_stack.kubectl("-n", "bench", "delete", "deployment", name, "--wait=true", timeout=120)
    return seconds


def rss_mib() -> dict[str, float]:
    """Resident memory of every node process (MiB), by command name; shims summed."""
    found: dict[str, float] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = Path((proc / "cmdline").read_bytes().split(b"\0")[0].decode()).name
            status = (proc / "status").read_text()
        except (OSError, IndexError):
            continue
        watched = (
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kubelet",
            "kube-proxy",
            "containerd",
            "containerd-shim-runc-v2",
            "coredns",
            "skipper",
            "local-path-provisioner",
        )
        if cmd in watched:
            kb = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
            found[cmd] = found.get(cmd, 0.0) + kb / 1024
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--cold-images", action="store_true")
    args = parser.parse_args()
    py = [sys.executable, "-m", "exchange_devtools"]

    print("make images:")
    if args.cold_images:
        sh(*py, "kube-down")
        for cache in (CACHE_DIR / "buildah", CACHE_DIR / "images"):
            shutil.rmtree(cache, ignore_errors=True)
        sh(*py, "kube-up")
        images_cold = timed("cold (empty image cache)", *py, "images")
    else:
        sh(*py, "kube-up")
        images_cold = float("nan")
    images_warm = timed("warm (nothing changed)", *py, "images")

    cold, warm = [], []
    for _ in range(args.rounds):
        sh(*py, "kube-down")
        for state in (kube_stack.ETCD_DIR, kube_stack.PATHS.kubelet_root):
            shutil.rmtree(state, ignore_errors=True)
        cold.append(kube_up())
        sh(*py, "kube-down")
        warm.append(kube_up())
    base = [apiserver_alone() for _ in range(args.rounds)]

    kube_stack.kubectl("create", "namespace", "bench", check=False)
    services = [
        rollout(deployment("tokenizer", SERVICES_IMAGE, ["serve", "tokenizer"], args.replicas))
        for _ in range(args.rounds)
    ]
    sleepers = [
        rollout(deployment("sleep", kube_addons.HELPER_IMAGE, ["exec sleep 3600"], args.replicas))
        for _ in range(args.rounds)
    ]
    memory = rss_mib()
    kube_stack.kubectl("delete", "namespace", "bench", "--wait=false", check=False)
    sh(*py, "kube-down")

    def med(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    b = statistics.median(base)
    print(f"\n{'case':<64}{'seconds':>9}{'baseline':>10}{'ratio':>8}")
    for label, rows in (("cold (etcd + kubelet state wiped)", cold), ("warm (state kept)", warm)):
        for key in ("node Ready", "CoreDNS answers", "kube-up returns"):
            v = med(rows, key)
            print(f"{f'kube-up {label}: {key}':<64}{v:>9.1f}{b:>10.1f}{v / b:>8.1f}")
    s, z = statistics.median(services), statistics.median(sleepers)
    print(f"{f'{args.replicas}-replica Deployment of {SERVICES_IMAGE} to Ready':<64}{s:>9.1f}{z:>10.1f}{s / z:>8.1f}")
    cold_images = f"{images_cold:>9.1f}" if images_cold == images_cold else "  not run (--cold-images)"
    print(f"{'make images, cold':<64}{cold_images}")
    print(f"{'make images, warm':<64}{images_warm:>9.1f}")
    print(f"baseline for kube-up: etcd + kube-apiserver alone; for the Deployment: busybox `sleep` x{args.replicas}")
    print(f"\nRSS with the node idle after the Deployments (MiB, {NODE_NAME}):")
    for name, mib in sorted(memory.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<28}{mib:>8.0f}")
    print(f"  {'total':<28}{sum(memory.values()):>8.0f}")
    print(f"(repo: {REPO_ROOT})")


if __name__ == "__main__":
    main()
