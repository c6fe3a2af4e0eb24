"""`exchange bootstrap`: create the Kafka topics and the raw-zone bucket (safe to re-run), waiting
up to STARTUP_WAIT_SECONDS for Kafka and S3 to answer.

Run by the operator's bootstrap Job in a cluster and by `make dev` locally.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from exchange.core.errors import DependencyError
from exchange.core.kafka import admin_options
from exchange.core.settings import KafkaSettings, S3Settings, ServiceSettings, load
from exchange.core.startup import until_up
from exchange.core.storage import ensure_bucket, s3_client
from exchange.core.topics import ALL_TOPICS


async def create_topics(settings: KafkaSettings, partitions: int) -> list[str]:
    """Create the missing platform topics; returns the names created."""
    admin = AIOKafkaAdminClient(**admin_options(settings))
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(t, num_partitions=partitions, replication_factor=1) for t in ALL_TOPICS if t not in existing
        ]
        if missing:
            await admin.create_topics(missing)
        return [t.name for t in missing]
    except KafkaError as exc:
        raise DependencyError("kafka", type(exc).__name__) from exc
    finally:
        await admin.close()


async def create_bucket(settings: S3Settings) -> None:
    try:
        async with s3_client(settings) as client:
            await ensure_bucket(client, settings.s3_bucket_raw)
    except Exception as exc:  # botocore raises many unrelated classes for one outage
        raise DependencyError("s3", type(exc).__name__) from exc


def bootstrap_command(
    partitions: Annotated[int, typer.Option(envvar="KAFKA_TOPIC_PARTITIONS", min=1, help="Partitions per topic.")] = 3,
) -> None:
    """Create the Kafka topics and the raw-zone bucket (idempotent)."""
    kafka, s3, wait = load(KafkaSettings), load(S3Settings), load(ServiceSettings).startup_wait_seconds
    created = asyncio.run(until_up("kafka", lambda: create_topics(kafka, partitions), wait))
    asyncio.run(until_up("s3", lambda: create_bucket(s3), wait))
    typer.echo(f"topics created: {', '.join(created) or 'none (all existed)'}; bucket ready")
