"""`exchange bootstrap` creates the topics and the bucket on the real engines, and is idempotent;
the CLI fails in one line with a non-zero exit when configuration or an engine is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from aiobotocore.session import get_session
from aiokafka.admin import AIOKafkaAdminClient

from exchange.core.topics import ALL_TOPICS

EXCHANGE = str(Path(sys.executable).with_name("exchange"))


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXCHANGE, *args], capture_output=True, text=True, timeout=120, env=env, check=False)


def engine_env(kafka, s3, bucket: str) -> dict[str, str]:
    return {**os.environ, **kafka.env(), **s3.env(), "S3_BUCKET_RAW": bucket, "ENV": "local"}


async def test_bootstrap_creates_topics_and_bucket_and_is_idempotent(kafka, s3):
    env = engine_env(kafka, s3, "bootstrap-test")
    first = run_cli("bootstrap", "--partitions", "2", env=env)
    assert first.returncode == 0, first.stderr
    second = run_cli("bootstrap", env=env)
    assert second.returncode == 0, second.stderr
    assert "none (all existed)" in second.stdout

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        topics = set(await admin.list_topics())
        described = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(list(ALL_TOPICS))}
    finally:
        await admin.close()
    assert set(ALL_TOPICS) <= topics
    # "topics created: a, b; bucket ready": only those; others in the session may have made the rest
    created = first.stdout.split("topics created: ", 1)[1].split(";", 1)[0].split(", ")
    assert set(created) <= set(ALL_TOPICS) | {"none (all existed)"}
    assert {t: described[t] for t in created if t in described} == {t: 2 for t in created if t in ALL_TOPICS}

    async with get_session().create_client("s3", **s3.client_kwargs()) as client:
        await client.head_bucket(Bucket="bootstrap-test")


def test_bootstrap_without_kafka_settings_fails_in_one_line(s3):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    result = run_cli("bootstrap", env=env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "KAFKA_BOOTSTRAP_SERVERS" in lines[0]


def test_bootstrap_against_a_broker_that_never_answers_fails_in_one_line_after_the_startup_wait(s3):
    env = {**engine_env_stub(s3), "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "STARTUP_WAIT_SECONDS": "1"}
    result = run_cli("bootstrap", env=env)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "kafka" in result.stderr


def engine_env_stub(s3) -> dict[str, str]:
    return {**os.environ, **s3.env(), "ENV": "local"}


def test_serving_an_unknown_component_is_a_usage_error():
    result = run_cli("serve", "nope", env=dict(os.environ))
    assert result.returncode == 2
