"""`ensure_bucket` is idempotent against a concurrent creator: on a cluster the bootstrap Job and a
local-auth ingest create the raw bucket at the same moment (ingest crash-looped on
BucketAlreadyOwnedByYou)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiobotocore.session import get_session

from exchange.core.storage import ensure_bucket


async def test_creators_racing_for_the_same_bucket_all_succeed(s3: Any):
    bucket = f"race-{uuid.uuid4().hex[:8]}"
    session = get_session()
    async with (
        session.create_client("s3", **s3.client_kwargs()) as a,
        session.create_client("s3", **s3.client_kwargs()) as b,
    ):
        results = await asyncio.gather(*(ensure_bucket(c, bucket) for c in (a, b, a, b)), return_exceptions=True)
        assert results == [None] * 4
        await a.head_bucket(Bucket=bucket)
