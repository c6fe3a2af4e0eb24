"""exchange_devtools.images without buildah or containerd: the cache key, .dockerignore, the
Debian sources, OCI archives, and the Kafka / s3proxy entrypoints' rendering (bash on the host)."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from exchange_devtools import images
from exchange_devtools.engines.base import EngineError

REPO = Path(__file__).resolve().parents[3]
KAFKA_ENTRYPOINT = REPO / "hack" / "images" / "kafka" / "kafka-entrypoint.sh"
S3PROXY_ENTRYPOINT = REPO / "hack" / "images" / "s3proxy" / "s3proxy-entrypoint.sh"


def render(script: Path, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TMPDIR": str(tmp_path), **env}
    return subprocess.run(
        ["bash", str(script), "--print-config"], env=clean, capture_output=True, text=True, check=False, timeout=30
    )


def properties(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


# ---- Kafka ------------------------------------------------------------------------------------------


def test_kafka_defaults_make_one_combined_kraft_node(tmp_path: Path):
    result = render(KAFKA_ENTRYPOINT, tmp_path)
    assert result.returncode == 0, result.stderr
    props = properties(result.stdout)
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == "PLAINTEXT://:9092,CONTROLLER://:9093"
    assert props["controller.quorum.voters"] == "1@localhost:9093"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["log.dirs"] == "/var/lib/kafka/data"
    assert props["offsets.topic.replication.factor"] == "1"
    # Rendered to TMPDIR (an emptyDir), never under the read-only root.
    assert (tmp_path / "kafka" / "server.properties").read_text() == result.stdout


def test_kafka_environment_becomes_properties(tmp_path: Path):
    props = properties(
        render(
            KAFKA_ENTRYPOINT,
            tmp_path,
            KAFKA_ADVERTISED_LISTENERS="PLAINTEXT://kafka-0.kafka:9092",
            KAFKA_LOG_RETENTION_HOURS="5",
            KAFKA_NUM_PARTITIONS="3",
            KAFKA_LISTENER_NAME_INTERNAL_SSL_KEYSTORE__TYPE="PKCS12",
            KAFKA_FOO___BAR="dash",
            KAFKA_A__B___C_D="mixed",
        ).stdout
    )
    assert props["advertised.listeners"] == "PLAINTEXT://kafka-0.kafka:9092"
    assert props["log.retention.hours"] == "5"
    assert props["num.partitions"] == "3"  # overrides the default
    assert props["listener.name.internal.ssl.keystore_type"] == "PKCS12"
    assert props["foo-bar"] == "dash"
    assert props["a_b-c.d"] == "mixed"


def test_kafka_jvm_and_service_link_variables_are_not_properties(tmp_path: Path):
    props = properties(
        render(
            KAFKA_ENTRYPOINT,
            tmp_path,
            KAFKA_HEAP_OPTS="-Xmx1g",
            KAFKA_JVM_PERFORMANCE_OPTS="-XX:+UseG1GC",
            KAFKA_OPTS="-Dx=y",
            KAFKA_LOG4J_OPTS="-Dlog4j2.configurationFile=/x",
            KAFKA_GC_LOG_OPTS="-Xlog:gc",
            KAFKA_JMX_OPTS="-Dcom.sun.management.jmxremote",
            # What the kubelet injects for a Service named "kafka".
            KAFKA_PORT="tcp://10.0.0.1:9092",
            KAFKA_PORT_9092_TCP_ADDR="10.0.0.1",
            KAFKA_SERVICE_HOST="10.0.0.1",
            KAFKA_SERVICE_PORT="9092",
        ).stdout
    )
    for key in props:
        assert not key.startswith(("heap", "jvm", "opts", "log4j", "gc.", "jmx", "port", "service")), key


def test_kafka_bootstrap_servers_replace_the_static_voters(tmp_path: Path):
    props = properties(
        render(KAFKA_ENTRYPOINT, tmp_path, KAFKA_CONTROLLER_QUORUM_BOOTSTRAP_SERVERS="kafka-0:9093").stdout
    )
    assert props["controller.quorum.bootstrap.servers"] == "kafka-0:9093"
    assert "controller.quorum.voters" not in props


def test_kafka_default_cluster_id_is_a_valid_kafka_uuid():
    import base64

    text = KAFKA_ENTRYPOINT.read_text()
    cluster_id = text.split("DEFAULT_CLUSTER_ID=", 1)[1].split()[0]
    assert len(cluster_id) == 22
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


# ---- s3proxy ---------------------------------------------------------------------------------------------


def test_s3proxy_defaults_keep_the_local_engine_behaviour(tmp_path: Path):
    result = render(S3PROXY_ENTRYPOINT, tmp_path, S3PROXY_IDENTITY="id", S3PROXY_CREDENTIAL="secret")
    assert result.returncode == 0, result.stderr
    props = properties(result.stdout)
    assert props["s3proxy.endpoint"] == "http://0.0.0.0:9000"
    assert props["s3proxy.authorization"] == "aws-v2-or-v4"
    assert props["s3proxy.identity"] == "id"
    assert props["s3proxy.credential"] == "secret"
    assert props["s3proxy.ignore-unknown-headers"] == "true"
    assert "s3proxy.virtual-host" not in props
    assert props["jclouds.provider"] == "filesystem-nio2"
    assert props["jclouds.filesystem.basedir"] == "/data"
    config = tmp_path / "s3proxy" / "s3proxy.conf"
    assert config.stat().st_mode & 0o077 == 0, "the secret must not be readable by others"


def test_s3proxy_environment_overrides(tmp_path: Path):
    props = properties(
        render(
            S3PROXY_ENTRYPOINT,
            tmp_path,
            S3PROXY_AUTHORIZATION="none",
            S3PROXY_ENDPOINT="http://0.0.0.0:8080",
            S3PROXY_VIRTUALHOST="s3.local",
            JCLOUDS_PROVIDER="filesystem",
            JCLOUDS_FILESYSTEM_BASEDIR="/srv",
        ).stdout
    )
    assert props["s3proxy.authorization"] == "none"
    assert "s3proxy.identity" not in props
    assert props["s3proxy.endpoint"] == "http://0.0.0.0:8080"
    assert props["s3proxy.virtual-host"] == "s3.local"
    assert props["jclouds.provider"] == "filesystem"
    assert props["jclouds.filesystem.basedir"] == "/srv"


def test_s3proxy_without_credentials_fails_in_one_line(tmp_path: Path):
    result = render(S3PROXY_ENTRYPOINT, tmp_path)
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0
    assert "S3PROXY_IDENTITY" in result.stderr


# ---- the cache key -------------------------------------------------------------------------------------


@pytest.fixture
def context(tmp_path: Path) -> Path:
    root = tmp_path / "ctx"
    (root / "src" / "__pycache__").mkdir(parents=True)
    (root / "docs").mkdir()
    (root / "src" / "app.py").write_text("print('hi')\n")
    (root / "src" / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")
    (root / "docs" / "notes.md").write_text("notes\n")
    (root / "Dockerfile").write_text("FROM ${BASE}\nCOPY src/ /src/\n")
    (root / ".dockerignore").write_text("*\n!src/\n**/__pycache__\n")
    return root


def spec_for(root: Path, **args: str) -> images.ImageSpec:
    return images.ImageSpec(
        "app", "localhost/app:dev", root / "Dockerfile", context=root, build_args=args, bases=("localhost/base:1",)
    )


def key(spec: images.ImageSpec, tmp_path: Path, base_id: str = "base-id-1") -> str:
    return images.image_key(spec, {"localhost/base:1": base_id}, images.FileHashes(tmp_path / "hashes.json"))


def test_the_key_is_stable_when_nothing_changes(context: Path, tmp_path: Path):
    assert key(spec_for(context, BASE="b"), tmp_path) == key(spec_for(context, BASE="b"), tmp_path)


def test_the_key_follows_the_context_the_args_and_the_base(context: Path, tmp_path: Path):
    first = key(spec_for(context, BASE="b"), tmp_path)
    assert key(spec_for(context, BASE="other"), tmp_path) != first
    assert key(spec_for(context, BASE="b"), tmp_path, base_id="base-id-2") != first
    (context / "src" / "app.py").write_text("print('changed')\n")
    assert key(spec_for(context, BASE="b"), tmp_path) != first
    (context / "src" / "app.py").write_text("print('hi')\n")
    assert key(spec_for(context, BASE="b"), tmp_path) == first
    (context / "src" / "app.py").chmod(0o755)
    assert key(spec_for(context, BASE="b"), tmp_path) != first


def test_the_key_ignores_what_dockerignore_leaves_out(context: Path, tmp_path: Path):
    first = key(spec_for(context), tmp_path)
    (context / "docs" / "notes.md").write_text("edited\n")
    (context / "src" / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\1")
    (context / "README.md").write_text("new\n")
    assert key(spec_for(context), tmp_path) == first
    (context / "src" / "new.py").write_text("")
    assert key(spec_for(context), tmp_path) != first


def test_the_key_of_a_staged_context_follows_its_files(tmp_path: Path):
    (tmp_path / "libs").mkdir()
    (tmp_path / "libs" / "a.jar").write_bytes(b"a")
    (tmp_path / "entry.sh").write_text("#!/bin/sh\n")
    (tmp_path / "Dockerfile").write_text("FROM x\n")
    spec = images.ImageSpec(
        "k", "localhost/k:1", tmp_path / "Dockerfile", files={"libs": tmp_path / "libs", "e.sh": tmp_path / "entry.sh"}
    )
    first = key(spec, tmp_path)
    assert key(spec, tmp_path) == first
    (tmp_path / "libs" / "b.jar").write_bytes(b"b")
    assert key(spec, tmp_path) != first


def test_file_hashes_are_remembered_until_the_file_changes(tmp_path: Path):
    path = tmp_path / "f"
    path.write_text("one")
    hashes = images.FileHashes(tmp_path / "h.json")
    first = hashes.digest(path)
    hashes.save()
    again = images.FileHashes(tmp_path / "h.json")
    assert again.digest(path) == first and not again.dirty
    path.write_text("two!")
    assert again.digest(path) != first


# ---- .dockerignore -------------------------------------------------------------------------------------


def test_the_repository_dockerignore_as_docker_reads_it():
    rules = images.dockerignore_rules((REPO / ".dockerignore").read_text())
    for path in ["pyproject.toml", "services/exchange/core/settings.py", "operator/exchange_operator/spec.py"]:
        assert not images.ignored(path, rules), path
    for path in [".git/config", ".venv/bin/python", ".dev/kubeconfig", "tests/unit/x.py", "docs/README.md"]:
        assert images.ignored(path, rules), path
    assert images.ignored("services/exchange/__pycache__/x.pyc", rules)
    assert images.ignored("services/exchange.egg-info/PKG-INFO", rules)


def test_context_files_walks_only_what_can_be_included(context: Path):
    (context / "node_modules" / "deep").mkdir(parents=True)
    (context / "node_modules" / "deep" / "x.js").write_text("")
    rules = images.dockerignore_rules((context / ".dockerignore").read_text())
    assert images.context_files(context, rules) == ["src/app.py"]


# ---- Debian sources -----------------------------------------------------------------------------------------


def test_debian_sources_reads_one_line_and_deb822_files(tmp_path: Path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(
        "# comment\ndeb [arch=amd64] http://mirror.example/debian bookworm main contrib\n"
        "deb-src http://mirror.example/debian bookworm main\n"
        "deb http://mirror.example/debian trixie main\n"
    )
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\nComponents: main\n\n"
        "Types: deb\nEnabled: no\nURIs: http://off.example/debian\nSuites: bookworm\nComponents: main\n"
    )
    (tmp_path / "sources.list.d" / "other.list.disabled").write_text("deb http://x.example/debian bookworm main\n")
    assert images.debian_sources(tmp_path) == [
        "deb http://mirror.example/debian bookworm main",
        "deb http://mirror.example/debian bookworm-updates main",
        "deb http://security.example/debian-security bookworm-security main",
    ]


def test_the_debian_recipe_changes_with_its_mirrors():
    one = images.debian_recipe(["deb http://a.example/debian bookworm main"])
    two = images.debian_recipe(["deb http://b.example/debian bookworm main"])
    assert images._sha256_json(one) != images._sha256_json(two)


# ---- OCI archives -------------------------------------------------------------------------------------------


def make_rootfs(tmp_path: Path) -> Path:
    rootfs = tmp_path / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "bin" / "hello").write_text("#!/bin/sh\necho hi\n")
    (rootfs / "bin" / "hello").chmod(0o755)
    (rootfs / "etc").mkdir()
    (rootfs / "etc" / "link").symlink_to("../bin/hello")
    return rootfs


def read_archive(archive: Path) -> tuple[dict, dict, dict, list[str]]:
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        manifest_name = "blobs/sha256/" + index["manifests"][0]["digest"].split(":")[1]
        manifest = json.load(tar.extractfile(manifest_name))  # type: ignore[arg-type]
        config = json.load(tar.extractfile("blobs/sha256/" + manifest["config"]["digest"].split(":")[1]))  # type: ignore[arg-type]
        layer = tar.extractfile("blobs/sha256/" + manifest["layers"][0]["digest"].split(":")[1])
        with tarfile.open(fileobj=layer) as inner:  # type: ignore[arg-type]
            names = inner.getnames()
    return index, manifest, config, names


def test_rootfs_image_writes_the_full_reference_and_the_config(tmp_path: Path):
    out = images.rootfs_image(
        "localhost/hello:1",
        make_rootfs(tmp_path),
        tmp_path / "out" / "hello.tar",
        entrypoint=["/bin/hello"],
        user="65532:65532",
        env={"A": "b"},
    )
    index, _manifest, config, names = read_archive(out)
    annotations = index["manifests"][0]["annotations"]
    assert annotations["org.opencontainers.image.ref.name"] == "localhost/hello:1"
    assert annotations["io.containerd.image.name"] == "localhost/hello:1"
    assert config["config"]["Entrypoint"] == ["/bin/hello"]
    assert config["config"]["User"] == "65532:65532"
    assert "A=b" in config["config"]["Env"] and any(e.startswith("PATH=") for e in config["config"]["Env"])
    assert sorted(names) == ["bin", "bin/hello", "etc", "etc/link"]
    assert images.archive_manifest_digest(out) == ("localhost/hello:1", index["manifests"][0]["digest"])


def test_rootfs_image_is_reproducible_and_skips_unchanged_work(tmp_path: Path):
    rootfs = make_rootfs(tmp_path)
    out = tmp_path / "hello.tar"
    images.rootfs_image("localhost/hello:1", rootfs, out, entrypoint=["/bin/hello"])
    digest = images.archive_manifest_digest(out)[1]
    mtime = out.stat().st_mtime_ns
    images.rootfs_image("localhost/hello:1", rootfs, out, entrypoint=["/bin/hello"])
    assert out.stat().st_mtime_ns == mtime, "unchanged inputs: the archive is kept"
    out.unlink()
    images.rootfs_image("localhost/hello:1", rootfs, out, entrypoint=["/bin/hello"])
    assert images.archive_manifest_digest(out)[1] == digest, "same tree, same digest"
    images.rootfs_image("localhost/hello:1", rootfs, out, entrypoint=["/bin/hello", "-v"])
    assert images.archive_manifest_digest(out)[1] != digest, "a new entrypoint rebuilds"


def test_rootfs_image_takes_a_tar_as_the_layer(tmp_path: Path):
    layer = tmp_path / "layer.tar"
    with tarfile.open(layer, "w") as tar:
        tar.add(make_rootfs(tmp_path), arcname=".")
    out = images.rootfs_image("localhost/t:1", layer, tmp_path / "t.tar", entrypoint=[])
    _, manifest, config, _ = read_archive(out)
    assert manifest["layers"][0]["size"] == layer.stat().st_size
    assert "Entrypoint" not in config["config"]


# ---- the driver -------------------------------------------------------------------------------------------


def test_select_adds_the_bases_in_build_order():
    chosen = [spec.name for spec in images.select(images.image_specs(), ["kafka"])]
    assert chosen == ["debian", "jre", "kafka"]
    chosen = [spec.name for spec in images.select(images.image_specs(), ["exchange"])]
    assert chosen == ["debian", "python", "python-build", "exchange"]


def test_no_tag_says_latest():
    for spec in images.image_specs():
        assert spec.ref.startswith("localhost/") and not spec.ref.endswith(":latest"), spec.ref


def test_a_missing_node_is_one_line_before_any_build(tmp_path: Path):
    with pytest.raises(EngineError, match=r"^the local node is not running: run `make kube-up` first$"):
        images.main(["--address", str(tmp_path / "containerd.sock")])


def test_the_builder_base_defaults_to_the_runtime_base():
    args = {}
    for line in (REPO / "Dockerfile").read_text().splitlines():
        if line.startswith("ARG ") and "=" in line:
            name, _, value = line[4:].partition("=")
            args[name] = value
    assert args["PYTHON_BUILDER_IMAGE"] == args["PYTHON_IMAGE"]


def test_the_services_and_the_operator_image_are_two_targets_of_the_root_dockerfile():
    specs = {spec.name: spec for spec in images.image_specs()}
    stages = {line.split()[-1] for line in (REPO / "Dockerfile").read_text().splitlines() if line.startswith("FROM ")}
    for name, target in (("exchange", "services"), ("exchange-operator", "operator")):
        assert specs[name].dockerfile == REPO / "Dockerfile"
        assert specs[name].target == target
        assert target in stages


def test_the_key_follows_the_target(context: Path, tmp_path: Path):
    spec = spec_for(context, BASE="b")
    first = key(spec, tmp_path)
    spec.target = "other"
    assert key(spec, tmp_path) != first
