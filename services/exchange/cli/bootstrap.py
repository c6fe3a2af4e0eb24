"""`exchange bootstrap`: create the Kafka topics and the raw-zone bucket (safe to re-run).

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
from exchange.core.settings import KafkaSettings, S3Settings, load
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
    created = asyncio.run(create_topics(load(KafkaSettings), partitions))
    asyncio.run(create_bucket(load(S3Settings)))
    typer.echo(f"topics created: {', '.join(created) or 'none (all existed)'}; bucket ready")
