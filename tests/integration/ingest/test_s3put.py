"""ingest's lean S3 PUT against the real S3 server: the digest the caller recorded is the one
the server checks the body against."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from exchange.core.settings import S3Settings
from exchange.ingest.s3put import S3PutError, S3Putter

from .conftest import BUCKET


@pytest.fixture
async def putter(ingest_env: dict[str, str]) -> Any:
    put = S3Putter(S3Settings.model_validate(ingest_env))
    yield put
    await put.close()


async def _get(s3: Any, key: str) -> bytes | None:
    async with get_session().create_client("s3", **s3.client_kwargs()) as client:
        try:
            obj = await client.get_object(Bucket=BUCKET, Key=key)
        except ClientError:
            return None
        return bytes(await obj["Body"].read())


async def test_the_body_is_stored_under_the_digest_the_caller_gives(putter: S3Putter, s3: Any) -> None:
    body = b'{"probe": "s3put"}'
    digest = hashlib.sha256(body).hexdigest()
    await putter.put(BUCKET, f"probe/{digest}", body, digest, {"content-type": "application/json"})
    assert await _get(s3, f"probe/{digest}") == body


async def test_a_body_that_does_not_match_the_recorded_digest_is_refused(putter: S3Putter, s3: Any) -> None:
    body = b'{"probe": "tampered"}'
    recorded = hashlib.sha256(b'{"probe": "original"}').hexdigest()
    with pytest.raises(S3PutError, match="400"):
        await putter.put(BUCKET, f"probe/{recorded}", body, recorded, {"content-type": "application/json"})
    assert await _get(s3, f"probe/{recorded}") is None


async def test_puts_reuse_one_keep_alive_connection(putter: S3Putter, s3: Any) -> None:
    for n in range(5):
        body = b'{"probe": %d}' % n
        digest = hashlib.sha256(body).hexdigest()
        await putter.put(BUCKET, f"probe/{digest}", body, digest, {"content-type": "application/json"})
        assert await _get(s3, f"probe/{digest}") == body
    assert putter.client.opened == 1


async def test_an_unknown_bucket_is_an_error_naming_the_status_only(putter: S3Putter) -> None:
    body = b'{"probe": "nobucket"}'
    digest = hashlib.sha256(body).hexdigest()
    with pytest.raises(S3PutError, match=r"^S3 PUT answered 404$"):
        await putter.put("no-such-bucket-here", f"probe/{digest}", body, digest, {"content-type": "application/json"})
