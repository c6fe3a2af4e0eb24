"""The S3 server as a real local process, through aiobotocore: buckets, objects, a restart."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from exchange_devtools.engines.s3 import S3Server


@asynccontextmanager
async def s3_client(s3: S3Server, **overrides: str) -> AsyncIterator[Any]:
    kwargs = {**s3.client_kwargs(), **overrides}
    config = AioConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 2})
    async with get_session().create_client("s3", config=config, **kwargs) as client:
        yield client


async def test_bucket_put_get_list_head(s3: S3Server) -> None:
    bucket = f"smoke-{uuid.uuid4().hex[:12]}"
    body = b'{"resourceType": "Patient", "id": "p1"}\n' * 100
    key = f"raw/tenant-a/{hashlib.sha256(body).hexdigest()}.json"
    async with s3_client(s3) as client:
        await client.create_bucket(Bucket=bucket)
        await client.put_object(
            Bucket=bucket,
            Key=key,
            Body=body,
            ContentType="application/fhir+json",
            Metadata={"sha256": hashlib.sha256(body).hexdigest()},
        )
        got = await client.get_object(Bucket=bucket, Key=key)
        async with got["Body"] as stream:
            assert await stream.read() == body
        head = await client.head_object(Bucket=bucket, Key=key)
        assert head["ContentLength"] == len(body)
        assert head["ContentType"] == "application/fhir+json"
        assert head["Metadata"] == {"sha256": hashlib.sha256(body).hexdigest()}
        listed = await client.list_objects_v2(Bucket=bucket, Prefix="raw/tenant-a/")
        assert [o["Key"] for o in listed["Contents"]] == [key]
        assert (await client.list_objects_v2(Bucket=bucket, Prefix="raw/tenant-b/")).get("KeyCount") == 0
        buckets = await client.list_buckets()
        assert bucket in {b["Name"] for b in buckets["Buckets"]}
        with pytest.raises(ClientError) as missing:
            await client.head_object(Bucket=bucket, Key="raw/absent.json")
        assert missing.value.response["Error"]["Code"] in {"404", "NoSuchKey"}


async def test_a_wrong_secret_is_rejected(s3: S3Server) -> None:
    async with s3_client(s3, aws_secret_access_key="not-the-secret") as client:
        with pytest.raises(ClientError) as denied:
            await client.list_buckets()
    assert denied.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


async def test_object_survives_a_restart(s3: S3Server) -> None:
    bucket, key, body = f"restart-{uuid.uuid4().hex[:12]}", "kept.bin", uuid.uuid4().bytes * 64
    async with s3_client(s3) as client:
        await client.create_bucket(Bucket=bucket)
        await client.put_object(Bucket=bucket, Key=key, Body=body)
    port, pid = s3.port, s3.engine.pid
    s3.restart()
    assert s3.port == port and s3.engine.pid != pid
    async with s3_client(s3) as client:
        got = await client.get_object(Bucket=bucket, Key=key)
        async with got["Body"] as stream:
            assert await stream.read() == body
