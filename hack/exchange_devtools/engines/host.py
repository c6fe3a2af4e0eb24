"""What the local node changes on the host, and how `make kube-down` puts it back.

The node runs as root and touches shared kernel state. Everything it changes is listed here:

- sysctls (`SYSCTLS`) and fixed host paths (`HOST_PATHS`): saved once before the first component
  starts, restored on teardown;
- addresses and links: the node's address on `lo`, the CNI bridge and any pod veth left behind;
- iptables and ip6tables: every chain named `KUBE-*` or `CNI-*` and every rule jumping to one
  (kube-proxy, the kubelet and the CNI plugins make them; nothing else on a machine uses those names);
- mounts under the node's state directories (the kubelet's rshared root dir, pod volumes, netns);
- the kubelet's `kubepods` cgroups in every cgroup v1 hierarchy.

`HostSnapshot` captures the observable part so a test can compare the host before and after.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

SYSCTLS = (
    # The kubelet sets these at start (its "kernel defaults").
    "kernel.panic",
    "kernel.panic_on_oops",
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    # Pod networking needs forwarding and bridged traffic through iptables; kube-proxy may set route_localnet.
    "net.ipv4.ip_forward",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.ipv4.conf.all.route_localnet",
)
NODE_SYSCTLS = {"net.ipv4.ip_forward": "1", "net.bridge.bridge-nf-call-iptables": "1"}
"""Values the node needs and sets itself (the rest are set by the kubelet or kube-proxy)."""
OUR_CHAINS = re.compile(r"(^:|^-A |\s-[jg] )(KUBE-|CNI-)")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def read_sysctl(name: str) -> str | None:
    try:
        return _sysctl_path(name).read_text().strip()
    except OSError:
        return None


def write_sysctl(name: str, value: str) -> None:
    with contextlib.suppress(OSError):
        if read_sysctl(name) != value:
            _sysctl_path(name).write_text(value)


HOST_PATHS = (
    "/var/lib/cni",
    "/var/log/containers",
    "/var/run/netns",
    "/run/containerd",
    "/var/run/nri",
    "/opt/containerd",
    "/var/lib/kubelet",
)
"""Fixed host paths the runtime or the kubelet create whatever their configuration says
(CNI's result cache, the kubelet's container log links, ...): removed on teardown when the node made them."""


def save_host(path: Path) -> None:
    """Record the sysctls and which `HOST_PATHS` exist, once (a second `kube-up` must not record the node's values)."""
    if path.exists():
        return
    state = {
        "sysctls": {name: value for name in SYSCTLS if (value := read_sysctl(name)) is not None},
        "absent_paths": [p for p in HOST_PATHS if not Path(p).exists()],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state, indent=2) + "\n")


def restore_host(path: Path) -> None:
    """Put back what `save_host` recorded (mounts under removed paths are unmounted first)."""
    try:
        state = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return
    for name, value in state.get("sysctls", {}).items():
        write_sysctl(name, str(value))
    for created in state.get("absent_paths", []):
        if Path(created).exists():
            unmount_under(Path(created))
            shutil.rmtree(created, ignore_errors=True)
    path.unlink()


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)


def link_exists(name: str) -> bool:
    return _ip("link", "show", "dev", name).returncode == 0


def ensure_node_address(address: str) -> None:
    """The node's own address as a /32 on the loopback link (these kernels have no dummy links)."""
    if f" {address}/" not in _ip("-4", "addr", "show", "dev", "lo").stdout:
        _ip("addr", "add", f"{address}/32", "dev", "lo")


def remove_node_address(address: str) -> None:
    if f" {address}/" in _ip("-4", "addr", "show", "dev", "lo").stdout:
        _ip("addr", "del", f"{address}/32", "dev", "lo")


def delete_link(name: str) -> None:
    if link_exists(name):
        _ip("link", "delete", name)


def veths_on(bridge: str) -> list[str]:
    """Links enslaved to `bridge` (pod veths whose sandbox was never torn down)."""
    out = _ip("-o", "link", "show", "master", bridge).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]


def reject_unrouted_services(service_cidr: str) -> None:
    """Refuse pod traffic to a Service address that kube-proxy did not translate (no endpoints yet).

    kube-proxy's own REJECT sits behind the CNI firewall plugin's per-pod ACCEPT in FORWARD, so
    such packets would leave through the default route (where a sandbox's egress proxy may even
    answer them). The plugin's CNI-ADMIN chain is evaluated first and meant for exactly this.
    """
    rule = ["-d", service_cidr, "-j", "REJECT", "--reject-with", "icmp-port-unreachable"]
    subprocess.run(["iptables", "-N", "CNI-ADMIN"], capture_output=True, check=False)
    if subprocess.run(["iptables", "-C", "CNI-ADMIN", *rule], capture_output=True, check=False).returncode != 0:
        subprocess.run(["iptables", "-A", "CNI-ADMIN", *rule], capture_output=True, check=False)


def clean_iptables() -> None:
    """Drop every KUBE-*/CNI-* chain and every rule that jumps to one, in both address families."""
    for save, restore in (("iptables-save", "iptables-restore"), ("ip6tables-save", "ip6tables-restore")):
        if shutil.which(save) is None:
            continue
        dump = subprocess.run([save], capture_output=True, text=True, check=False).stdout
        kept = without_node_chains(dump)
        if kept != dump:
            subprocess.run([restore], input=kept, text=True, capture_output=True, check=False)


def without_node_chains(dump: str) -> str:
    """An iptables-save dump without the KUBE-*/CNI-* chains and the rules that jump to them."""
    return "".join(line for line in dump.splitlines(keepends=True) if not OUR_CHAINS.search(line))


def mounts_under(*roots: Path) -> list[str]:
    """Mount points below any of `roots`, deepest first."""
    prefixes = [str(r.resolve()).rstrip("/") + "/" for r in roots]
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if any((point + "/").startswith(p) for p in prefixes):
            found.append(point)
    return sorted(set(found), key=lambda p: p.count("/"), reverse=True)


def unmount_under(*roots: Path) -> None:
    for point in mounts_under(*roots):
        if subprocess.run(["umount", point], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def kubepods_cgroups() -> list[Path]:
    """The kubelet's `kubepods` cgroup trees (cgroup v1: one per controller hierarchy)."""
    if not CGROUP_ROOT.is_dir():
        return []
    return sorted(p for p in CGROUP_ROOT.glob("*/kubepods*") if p.is_dir())


def remove_kubepods_cgroups() -> None:
    """rmdir the kubelet's cgroups bottom-up (only empty cgroups can go; the pods are stopped first)."""
    for top in kubepods_cgroups():
        for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                d.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


# --- what a test compares -----------------------------------------------------------------------


def _node_owned(pid: int, marker: str) -> bool:
    """A process of the node: its command line names the node's state dir, or it runs in a pod."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        cgroup = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return False
    return marker in cmdline or "kubepods" in cgroup


def _listening(marker: str) -> set[str]:
    """Listening sockets of the node's processes (a test session's other engines come and go meanwhile)."""
    out = subprocess.run(["ss", "-Hltnup"], capture_output=True, text=True, check=False).stdout
    found = set()
    for fields in (line.split() for line in out.splitlines()):
        pids = [int(p) for p in re.findall(r"pid=(\d+)", fields[-1])] if len(fields) >= 7 else []
        if any(_node_owned(pid, marker) for pid in pids):
            found.add(f"{fields[0]} {fields[4]} {fields[6].split(',')[0]}")
    return found


def _rules() -> set[str]:
    rules: set[str] = set()
    for save in ("iptables-save", "ip6tables-save"):
        if shutil.which(save) is None:
            continue
        dump = subprocess.run([save], capture_output=True, text=True, check=False).stdout
        rules |= {f"{save} {line}" for line in dump.splitlines() if line.startswith("-A ")}
    return rules


@dataclass(frozen=True)
class HostSnapshot:
    """The host state the node may change (not pids or counters)."""

    sysctls: dict[str, str | None] = field(default_factory=dict)
    links: frozenset[str] = frozenset()
    addresses: frozenset[str] = frozenset()
    listening: frozenset[str] = frozenset()
    rules: frozenset[str] = frozenset()
    mounts: frozenset[str] = frozenset()
    cgroups: frozenset[str] = frozenset()
    paths: frozenset[str] = frozenset()

    @classmethod
    def capture(cls, marker: str) -> HostSnapshot:
        """The host now; `marker` (the node's state dir) tells the node's processes from others."""
        links = _ip("-o", "link", "show").stdout
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
        return cls(
            sysctls={name: read_sysctl(name) for name in SYSCTLS},
            links=frozenset(line.split(":")[1].strip().split("@")[0] for line in links.splitlines() if ":" in line),
            addresses=frozenset(" ".join(line.split()[1:4]) for line in _ip("-o", "addr", "show").stdout.splitlines()),
            listening=frozenset(_listening(marker)),
            rules=frozenset(_rules()),
            mounts=frozenset(line.split()[4] for line in mounts),
            cgroups=frozenset(str(p) for p in kubepods_cgroups()),
            paths=frozenset(p for p in HOST_PATHS if Path(p).exists()),
        )

    def differences(self, after: HostSnapshot) -> list[str]:
        """One line per thing that differs from `after` (empty when the host is as it was)."""
        diffs = [
            f"sysctl {k}: {v} -> {after.sysctls.get(k)}" for k, v in self.sysctls.items() if after.sysctls.get(k) != v
        ]
        for what in ("links", "addresses", "listening", "rules", "mounts", "cgroups", "paths"):
            before, now = getattr(self, what), getattr(after, what)
            diffs += [f"{what}: left behind {item}" for item in sorted(now - before)]
            diffs += [f"{what}: gone {item}" for item in sorted(before - now)]
        return diffs
