"""Request content codings: which are accepted (415 otherwise) and gzip inflated within a limit,
so a small body that inflates to gigabytes is refused after the limit, not after the gigabytes."""

from __future__ import annotations

import gzip
import os
import zlib
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response

from exchange.core.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from exchange.core.http import (
    ACCEPTED_CODINGS,
    GZIP_MAX_MEMBERS,
    GZIP_RESPONSE_MIN,
    accepts_gzip,
    compressed,
    content_coding,
    decoded_body,
    gunzip_limited,
)


def request(*encodings: str, accept: str | None = None) -> Request:
    headers = [(b"content-encoding", e.encode()) for e in encodings]
    if accept is not None:
        headers.append((b"accept-encoding", accept.encode()))
    return Request({"type": "http", "method": "POST", "path": "/", "headers": headers})


@pytest.mark.parametrize(
    ("headers", "coding"),
    [((), "identity"), (("identity",), "identity"), (("",), "identity"), (("gzip",), "gzip"),
     ((" GZip ",), "gzip"), (("x-gzip",), "gzip"), (("identity, gzip",), "gzip")],
)  # fmt: skip
def test_accepted_codings(headers, coding):
    assert content_coding(request(*headers)) == coding


@pytest.mark.parametrize("headers", [("br",), ("deflate",), ("gzip, gzip",), ("gzip", "gzip"), ("gzip, br",)])
def test_any_other_coding_or_more_than_one_is_415_naming_the_accepted_ones(headers):
    with pytest.raises(UnsupportedMediaType) as err:
        content_coding(request(*headers))
    assert err.value.status == 415
    assert err.value.headers == {"Accept-Encoding": ACCEPTED_CODINGS}


def test_gzip_is_inflated():
    body = b'{"resourceType": "Patient"}\n' * 1000
    assert gunzip_limited(gzip.compress(body), len(body)) == body


def test_several_gzip_members_are_one_body():
    assert gunzip_limited(gzip.compress(b"one\n") + gzip.compress(b"two\n"), 100) == b"one\ntwo\n"


def test_a_body_that_inflates_past_the_limit_is_413_without_inflating_it_all():
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024))  # 64 MiB from ~64 KB
    assert len(bomb) < 100_000
    with pytest.raises(PayloadTooLarge, match="decoded body exceeds 1024 bytes"):
        gunzip_limited(bomb, 1024)
    with pytest.raises(PayloadTooLarge):  # the limit counts across members too
        gunzip_limited(gzip.compress(b"a" * 600) + gzip.compress(b"b" * 600), 1024)


class CountingInflaters:
    """Stands in for `zlib.decompressobj`: real inflaters that count the input bytes zlib is given
    and the leftover input it copies out (`unused_data`), which is where the work is."""

    def __init__(self) -> None:
        self.fed = self.copied = self.made = 0
        self.real = zlib.decompressobj

    def __call__(self, *args: int, **kwargs: int) -> CountingInflaters.Inflater:
        self.made += 1
        return CountingInflaters.Inflater(self, self.real(*args, **kwargs))

    class Inflater:
        def __init__(self, counts: CountingInflaters, inner: Any) -> None:
            self.counts, self.inner = counts, inner

        def decompress(self, data: Any, max_length: int = 0) -> bytes:
            self.counts.fed += len(data)
            out: bytes = self.inner.decompress(data, max_length)
            self.counts.copied += len(self.inner.unused_data)
            return out

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)


def test_many_members_cost_work_in_proportion_to_the_body_not_its_square(monkeypatch):
    member = gzip.compress(b'{"resourceType": "Patient"}\n' * 40)
    body = member * 4000  # ~240 KB in 4,000 members: the old loop handed zlib ~470 MB of it
    counts = CountingInflaters()
    monkeypatch.setattr(zlib, "decompressobj", counts)
    assert gunzip_limited(body, 10 << 20) == b'{"resourceType": "Patient"}\n' * 40 * 4000
    assert counts.made == 4000
    assert counts.fed <= 2 * len(body)
    assert counts.copied <= 2 * len(body)


def test_more_members_than_the_limit_is_413_before_inflating_them():
    counts = CountingInflaters()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(zlib, "decompressobj", counts)
        with pytest.raises(PayloadTooLarge, match=f"more than {GZIP_MAX_MEMBERS} gzip members"):
            gunzip_limited(gzip.compress(b"") * (GZIP_MAX_MEMBERS + 1000), 1 << 20)
    assert counts.made == GZIP_MAX_MEMBERS
    assert gunzip_limited(gzip.compress(b"a") * GZIP_MAX_MEMBERS, 1 << 20) == b"a" * GZIP_MAX_MEMBERS


def test_exactly_the_limit_is_accepted():
    assert len(gunzip_limited(gzip.compress(b"x" * 1024), 1024)) == 1024


@pytest.mark.parametrize(
    "data",
    [b"", b"not gzip at all", gzip.compress(b"cut short" * 100)[:-12], gzip.compress(b"ok") + b"\0\0trailing",
     zlib.compress(b"zlib, not gzip")],
    ids=["empty", "plain", "truncated", "trailing-garbage", "zlib"],
)  # fmt: skip
def test_anything_that_is_not_whole_gzip_is_400_without_content_in_the_message(data):
    with pytest.raises(BadRequest) as err:
        gunzip_limited(data, 1 << 20)
    assert "not valid gzip" in err.value.detail
    assert "cut short" not in err.value.detail and "zlib, not" not in err.value.detail


async def test_large_bodies_are_inflated_off_the_loop_with_the_same_result():
    body = os.urandom(600_000)  # incompressible: the gzip body is over the inline threshold
    assert await decoded_body("gzip", gzip.compress(body), len(body)) == body
    assert await decoded_body("identity", body, 1) is body  # identity is not looked at


@pytest.mark.parametrize(
    ("value", "ok"),
    [(None, False), ("", False), ("gzip", True), ("GZIP", True), ("gzip, deflate, br", True), ("br, gzip;q=0.5", True),
     ("gzip;q=0", False), ("gzip; q=0.0", False), ("*", True), ("*;q=0", False), ("br", False), ("*, gzip;q=0", False),
     ("identity", False), ("gzip;q=bogus", False), ("x-gzip", True)],
)  # fmt: skip
def test_accept_encoding_is_read_as_rfc_9110_says(value, ok):
    assert accepts_gzip(value) is ok


async def test_a_large_answer_is_compressed_for_a_client_that_accepts_gzip():
    body = b'{"results": [' + b'{"line": 1, "status": "accepted"},' * 4000 + b"{}]}"
    assert len(body) >= GZIP_RESPONSE_MIN
    answer = Response(body, 202, {"Idempotent-Replayed": "true"}, media_type="application/json")
    out = await compressed(request(accept="gzip, deflate"), answer)
    assert out.status_code == 202 and gzip.decompress(out.body) == body
    assert out.headers["content-encoding"] == "gzip" and out.headers["vary"] == "Accept-Encoding"
    assert out.headers["content-type"] == "application/json" and out.headers["idempotent-replayed"] == "true"
    assert int(out.headers["content-length"]) == len(out.body) < len(body) // 10


async def test_small_answers_and_clients_without_gzip_get_the_answer_as_it_is():
    large = Response(b"x" * GZIP_RESPONSE_MIN, 202)
    small = Response(b"x" * (GZIP_RESPONSE_MIN - 1), 202)
    assert await compressed(request(accept="gzip"), small) is small
    assert await compressed(request(), large) is large
    assert await compressed(request(accept="identity"), large) is large
