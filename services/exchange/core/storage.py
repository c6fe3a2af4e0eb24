"""S3 helpers (aiobotocore): a client factory, content addressing, and a readiness check."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from exchange.core.settings import S3Settings


def content_key(prefix: str, data: bytes) -> tuple[str, str]:
    """Content-addressed object key and the hex SHA-256 of `data`.

    Key layout `<prefix>/sha256/<aa>/<bb>/<digest>` spreads objects over prefixes.
    """
    digest = hashlib.sha256(data).hexdigest()
    return f"{prefix}/sha256/{digest[:2]}/{digest[2:4]}/{digest}", digest


@asynccontextmanager
async def s3_client(settings: S3Settings, **config: Any) -> AsyncIterator[Any]:
    """An aiobotocore S3 client using path-style addressing (works with s3proxy, MinIO, AWS)."""
    session = get_session()
    cfg = AioConfig(
        connect_timeout=settings.s3_timeout,
        read_timeout=settings.s3_timeout,
        retries={"max_attempts": config.pop("max_attempts", 2), "mode": "standard"},
        s3={"addressing_style": "path"},
        max_pool_connections=config.pop("max_pool_connections", 50),
        **config,
    )
    async with session.create_client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key_id.get_secret_value(),
        aws_secret_access_key=settings.s3_secret_access_key.get_secret_value(),
        config=cfg,
    ) as client:
        yield client


async def ensure_bucket(client: Any, bucket: str) -> None:
    """Create `bucket` unless it exists (idempotent, also against a concurrent creator: a
    pipeline's bootstrap Job and a local ingest create the same bucket as they start)."""
    try:
        await client.head_bucket(Bucket=bucket)
    except client.exceptions.ClientError:
        with suppress(client.exceptions.BucketAlreadyOwnedByYou):
            await client.create_bucket(Bucket=bucket)


def bucket_readiness(client: Any, bucket: str) -> Any:
    async def check() -> None:
        await client.head_bucket(Bucket=bucket)

    return check
