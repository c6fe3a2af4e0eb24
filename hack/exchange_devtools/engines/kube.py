"""A Kubernetes control plane as local processes: etcd + kube-apiserver, no controllers.

What `start_control_plane(workdir)` sets up (like controller-runtime's envtest):

- `<workdir>/pki/`: a CA, a serving certificate for 127.0.0.1/localhost, a service-account
  signing key pair and an admin client certificate with `O=system:masters`; reused when present;
- etcd on free loopback ports (`EtcdServer`);
- kube-apiserver on a free secure port of 127.0.0.1, `--authorization-mode=RBAC`, ready once
  `GET /readyz` with the admin certificate answers 200;
- `<workdir>/kubeconfig`: an admin kubeconfig with the certificates inlined.

No kube-controller-manager runs: nothing garbage-collects, schedules or creates default service
accounts, so tests check owner references rather than cascading deletion.
Installed by `hack/install/kube.sh` (kube-apiserver, kubectl) and `hack/install/etcd.sh`.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from exchange_devtools.engines.base import (
    BIN_DIR,
    EngineProcess,
    free_port,
    require_binary,
    start_on_free_ports,
)
from exchange_devtools.engines.etcd import EtcdServer

KUBE_APISERVER_BIN = BIN_DIR / "kube-apiserver"
KUBECTL_BIN = BIN_DIR / "kubectl"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
CERT_DAYS = 365


# --- certificates ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """Paths of the control plane's key material (PEM files)."""

    dir: Path

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def serving_cert(self) -> Path:
        return self.dir / "apiserver.crt"

    @property
    def serving_key(self) -> Path:
        return self.dir / "apiserver.key"

    @property
    def sa_key(self) -> Path:
        return self.dir / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.dir / "sa.pub"

    @property
    def admin_cert(self) -> Path:
        return self.dir / "admin.crt"

    @property
    def admin_key(self) -> Path:
        return self.dir / "admin.key"

    def files(self) -> list[Path]:
        return [
            self.ca_cert,
            self.ca_key,
            self.serving_cert,
            self.serving_key,
            self.sa_key,
            self.sa_pub,
            self.admin_cert,
            self.admin_key,
        ]

    def ensure(self) -> Pki:
        """Generate every file unless all of them exist already (restarts keep the kubeconfig valid)."""
        if all(p.exists() for p in self.files()):
            return self
        self.dir.mkdir(parents=True, exist_ok=True)
        ca_key = _new_key()
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "exchange-local-ca")])
        ca_cert = (
            _builder(ca_name, ca_name, ca_key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        _write_key(self.ca_key, ca_key)
        _write_cert(self.ca_cert, ca_cert)

        serving_key = _new_key()
        sans: list[x509.GeneralName] = [
            x509.DNSName(name)
            for name in (
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            )
        ]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ("127.0.0.1", "::1", "10.0.0.1")]
        serving = _leaf(
            ca_cert,
            ca_key,
            serving_key,
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
            ExtendedKeyUsageOID.SERVER_AUTH,
        ).add_extension(x509.SubjectAlternativeName(sans), critical=False)
        _write_key(self.serving_key, serving_key)
        _write_cert(self.serving_cert, serving.sign(ca_key, hashes.SHA256()))

        admin_key = _new_key()
        admin_name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                x509.NameAttribute(NameOID.COMMON_NAME, "exchange-admin"),
            ]
        )
        admin = _leaf(ca_cert, ca_key, admin_key, admin_name, ExtendedKeyUsageOID.CLIENT_AUTH)
        _write_key(self.admin_key, admin_key)
        _write_cert(self.admin_cert, admin.sign(ca_key, hashes.SHA256()))

        sa_key = _new_key()
        _write_key(self.sa_key, sa_key)
        self.sa_pub.write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        return self

    def issue(
        self,
        name: str,
        common_name: str,
        *,
        organizations: tuple[str, ...] = (),
        server: bool = False,
        dns_names: tuple[str, ...] = (),
        ips: tuple[str, ...] = (),
    ) -> tuple[Path, Path]:
        """`<name>.crt` and `<name>.key` signed by the CA (client auth, plus server auth when `server`).

        Reused when present and its SANs already cover `dns_names` and `ips`.
        """
        cert_path, key_path = self.dir / f"{name}.crt", self.dir / f"{name}.key"
        if cert_path.exists() and key_path.exists() and _covers(cert_path, dns_names, ips):
            return cert_path, key_path
        ca_key = serialization.load_pem_private_key(self.ca_key.read_bytes(), password=None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        ca_cert = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        subject = x509.Name(
            [
                *(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )
        key = _new_key()
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH, *([ExtendedKeyUsageOID.SERVER_AUTH] if server else [])]
        builder = _leaf(ca_cert, ca_key, key, subject, usages)
        if dns_names or ips:
            sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
            sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        _write_key(key_path, key)
        _write_cert(cert_path, builder.sign(ca_key, hashes.SHA256()))
        return cert_path, key_path

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context that trusts the CA and presents the admin certificate."""
        ctx = ssl.create_default_context(cafile=str(self.ca_cert))
        ctx.load_cert_chain(str(self.admin_cert), str(self.admin_key))
        return ctx


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CERT_DAYS))
    )


def _leaf(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    key: ec.EllipticCurvePrivateKey,
    subject: x509.Name,
    usage: x509.ObjectIdentifier | list[x509.ObjectIdentifier],
) -> x509.CertificateBuilder:
    usages = usage if isinstance(usage, list) else [usage]
    return (
        _builder(subject, ca_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )


def _covers(cert_path: Path, dns_names: tuple[str, ...], ips: tuple[str, ...]) -> bool:
    """True when the certificate's SANs include every name and address asked for."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return not dns_names and not ips
    have_ips = {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    return set(dns_names) <= set(sans.get_values_for_type(x509.DNSName)) and set(ips) <= have_ips


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


# --- kubeconfig --------------------------------------------------------------------------------


def write_kubeconfig(
    path: Path,
    server: str,
    pki: Pki,
    name: str = "exchange-local",
    *,
    client: tuple[Path, Path] | None = None,
) -> Path:
    """A kubeconfig with the CA and a client certificate inlined (JSON, which is YAML).

    `client` is a (cert, key) pair; default the admin's (`O=system:masters`).
    """
    cert, key = client or (pki.admin_cert, pki.admin_key)

    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": name,
                "cluster": {"server": server, "certificate-authority-data": b64(pki.ca_cert)},
            }
        ],
        "users": [
            {
                "name": f"{name}-admin",
                "user": {
                    "client-certificate-data": b64(cert),
                    "client-key-data": b64(key),
                },
            }
        ],
        "contexts": [{"name": name, "context": {"cluster": name, "user": f"{name}-admin", "namespace": "default"}}],
        "current-context": name,
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(config, indent=2) + "\n")
    tmp.chmod(0o600)
    tmp.replace(path)
    return path


# --- kube-apiserver ----------------------------------------------------------------------------


def apiserver_ready(server: str, pki: Pki, timeout: float = 2.0) -> bool:
    """True when `GET /readyz` with the admin certificate answers 200."""
    try:
        with urllib.request.urlopen(f"{server}/readyz", timeout=timeout, context=pki.ssl_context()) as resp:
            return bool(resp.status == 200)
    except urllib.error.HTTPError:
        return False


@dataclass
class KubeApiServer:
    """kube-apiserver on 127.0.0.1 in front of an etcd."""

    workdir: Path
    etcd_url: str
    pki: Pki
    name: str = "kube_apiserver"
    """Equals the pytest fixture name, so failing tests print its log."""
    port: int = 0
    """0 = pick a free port at start."""
    timeout: float = 120.0
    extra_args: list[str] = field(default_factory=list)
    node: list[str] | None = None
    """Serving, authorization and admission flags of a control plane with a node (kube_node.py);
    None: the envtest-style API alone (loopback, RBAC, no ServiceAccount admission)."""
    host: str = "127.0.0.1"
    """Where clients reach it (the node's address when `node` is set)."""
    engine: EngineProcess = field(init=False)

    def __post_init__(self) -> None:
        self.engine = EngineProcess(
            name=self.name, argv=[], workdir=self.workdir, ready=self._ready, timeout=self.timeout
        )

    @property
    def server(self) -> str:
        return f"https://{self.host}:{self.port}"

    def _ready(self) -> bool:
        return apiserver_ready(self.server, self.pki)

    def argv(self) -> list[str]:
        pki = self.pki
        args = [
            str(KUBE_APISERVER_BIN),
            f"--etcd-servers={self.etcd_url}",
            f"--secure-port={self.port}",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--client-ca-file={pki.ca_cert}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            "--profiling=false",
        ]
        if self.node is None:
            args += [
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--authorization-mode=RBAC",
                "--allow-privileged=true",
                # No controller-manager creates the `default` service account, so the ServiceAccount
                # admission plugin would reject every Pod (envtest disables it too).
                "--disable-admission-plugins=ServiceAccount",
            ]
        else:
            args += self.node
        return [*args, *self.extra_args]

    def start(self) -> KubeApiServer:
        require_binary(KUBE_APISERVER_BIN, "kube.sh")
        fixed = bool(self.port)

        def prepare() -> None:
            if not fixed:
                self.port = free_port()
            self.engine.argv = self.argv()

        start_on_free_ports(self.engine, prepare, fixed=fixed)
        return self

    def stop(self) -> None:
        self.engine.stop()


@dataclass
class KubeControlPlane:
    """A started etcd + kube-apiserver and an admin kubeconfig for them."""

    etcd: EtcdServer
    apiserver: KubeApiServer
    kubeconfig: Path

    @property
    def server(self) -> str:
        return self.apiserver.server

    @property
    def pki(self) -> Pki:
        return self.apiserver.pki

    @property
    def engines(self) -> list[EngineProcess]:
        return [self.etcd.engine, self.apiserver.engine]

    def stop(self) -> None:
        """Stop kube-apiserver first (it would log etcd errors otherwise), then etcd."""
        try:
            self.apiserver.stop()
        finally:
            self.etcd.stop()


OnBuild = Callable[[EngineProcess], object]
"""Called with each engine before it starts (the pytest fixtures pass `track`)."""


def start_apiserver(
    workdir: Path, etcd: EtcdServer, *, kubeconfig: Path | None = None, on_build: OnBuild | None = None
) -> KubeControlPlane:
    """Start kube-apiserver on a free port in front of a started etcd; write the admin kubeconfig.

    Key material lives in `<workdir>/pki` (reused when present), the log in `<workdir>`, the
    kubeconfig at `kubeconfig` (default `<workdir>/kubeconfig`).
    """
    require_binary(KUBE_APISERVER_BIN, "kube.sh")
    pki = Pki(workdir / "pki").ensure()
    apiserver = KubeApiServer(workdir, etcd_url=etcd.client_url, pki=pki)
    if on_build is not None:
        on_build(apiserver.engine)
    apiserver.start()
    path = write_kubeconfig(kubeconfig or workdir / "kubeconfig", apiserver.server, pki)
    return KubeControlPlane(etcd=etcd, apiserver=apiserver, kubeconfig=path)


def start_control_plane(workdir: Path, *, fast: bool = True, on_build: OnBuild | None = None) -> KubeControlPlane:
    """Start etcd (`<workdir>/etcd`) and kube-apiserver (`<workdir>`) on free ports.

    `fast` skips etcd's fsync: right for tests, wrong for state that should survive a crash.
    """
    require_binary(KUBE_APISERVER_BIN, "kube.sh")
    etcd = EtcdServer(workdir / "etcd", fast=fast)
    if on_build is not None:
        on_build(etcd.engine)
    etcd.start()
    try:
        return start_apiserver(workdir, etcd, on_build=on_build)
    except BaseException:
        etcd.stop()
        raise
