"""The raw zone's answers: only S3 saying NoSuchKey makes a record poison; any other 404 (on the
local node, a proxy answered for the S3 Service between two s3proxy pods, and a record was
dead-lettered) is an outage to wait out, on a fresh connection. A local HTTP server stands in for
S3; the presigner is a stub."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from botocore.exceptions import ClientError

from exchange.core.errors import DependencyError, PoisonError
from exchange.normalizer.events import IngestedEvent
from exchange.normalizer.raw import RawObjects

RECORD = b'{"resourceType":"Patient","id":"p1"}'
NO_SUCH_KEY = (
    b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>NoSuchKey</Code>"
    b"<Message>The specified key does not exist.</Message></Error>"
)


class FakeS3:
    """Answers GET /bucket/key with the next of `answers` (status, body); a connection listed in
    `foreign` (by its order of arrival) answers 404 with no body whatever is next, as the proxy did."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, bytes]] = []
        self.connections: list[tuple[str, int]] = []
        self.foreign: set[int] = set()
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        assert request.transport is not None
        peer = request.transport.get_extra_info("peername")
        if peer not in self.connections:
            self.connections.append(peer)
        if self.connections.index(peer) in self.foreign:
            return web.Response(status=404)
        status, body = self.answers.pop(0)
        return web.Response(status=status, body=body, content_type="application/xml")

    async def generate_presigned_url(self, _op: str, Params: dict[str, str], ExpiresIn: int) -> str:
        return f"{self.url}/{Params['Bucket']}/{Params['Key']}"


@pytest.fixture
async def s3() -> AsyncIterator[FakeS3]:
    fake = FakeS3()
    app = web.Application()
    app.router.add_get("/{tail:.*}", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    yield fake
    await runner.cleanup()


@pytest.fixture
async def raw(s3: FakeS3) -> AsyncIterator[RawObjects]:
    async with aiohttp.ClientSession() as http:
        yield RawObjects(s3, budget_bytes=0, http=http)


def event() -> IngestedEvent:
    return IngestedEvent(
        event_id=uuid.uuid4(), record_id=uuid.uuid4(), tenant="t", source_format="fhir", record_type="Patient",
        schema_version="R4", bucket="raw", key="raw/t/sha256/ab/cd/abcd", sha256=hashlib.sha256(RECORD).hexdigest(),
        content_type="application/fhir+json", line=None, received_at=datetime.now(UTC), correlation_id=None,
    )  # fmt: skip


async def test_s3_saying_no_such_key_makes_the_record_poison(s3: FakeS3, raw: RawObjects) -> None:
    s3.answers = [(404, NO_SUCH_KEY)]
    with pytest.raises(PoisonError) as caught:
        await raw.lines(event())
    assert caught.value.error_class == "raw-missing"


async def test_a_404_that_is_not_s3_speaking_is_an_outage_waited_out_on_fresh_connections(
    s3: FakeS3, raw: RawObjects
) -> None:
    s3.foreign = {0}  # the first connection leads somewhere else, and aiohttp pools it
    s3.answers = [(200, RECORD)]
    for _ in range(2):  # the pooled connection once more, then never again
        with pytest.raises(DependencyError):
            await raw.lines(event())
    assert await raw.lines(event()) == [RECORD]
    assert len(s3.connections) == 2


async def test_a_server_error_is_an_outage(s3: FakeS3, raw: RawObjects) -> None:
    s3.answers = [(503, b"<Error><Code>SlowDown</Code></Error>")]
    with pytest.raises(DependencyError):
        await raw.lines(event())


class BotocoreS3:
    """An aiobotocore client whose GetObject fails with `code`."""

    def __init__(self, code: str) -> None:
        self.code = code

    async def get_object(self, Bucket: str, Key: str) -> Any:
        raise ClientError({"Error": {"Code": self.code, "Message": "Not Found"}}, "GetObject")


async def test_through_botocore_only_s3s_own_codes_mean_missing() -> None:
    with pytest.raises(DependencyError):  # botocore names a body-less 404 "404"
        await RawObjects(BotocoreS3("404"), budget_bytes=0).lines(event())
    with pytest.raises(PoisonError):
        await RawObjects(BotocoreS3("NoSuchKey"), budget_bytes=0).lines(event())
