"""The bearer-token benchmark behind `hack/bench/auth` (see that script for usage)."""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding

from exchange.core.auth import JWKSCache, JWTVerifier
from exchange.core.settings import AuthSettings
from exchange_devtools.calibrate import machine_speed
from exchange_devtools.fixtures.jwks import TestIssuer, serve_jwks


def verifier(issuer: TestIssuer, cache_seconds: int) -> JWTVerifier:
    env: dict[str, Any] = {"ENV": "production", **issuer.env(), "JWT_CACHE_SECONDS": cache_seconds}
    settings = AuthSettings(**env)
    return JWTVerifier(settings, JWKSCache(issuer.jwks_url))


def bare_check(issuer: TestIssuer, alg: str, token: str) -> Callable[[], None]:
    """The signature check alone (cryptography, no JWT parsing): what verifying cannot go below."""
    head, body, sig = token.split(".")
    signed = f"{head}.{body}".encode()
    signature = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    if alg == "RS256":
        public: Any = issuer.rsa_key.public_key()
        return lambda: public.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    half = len(signature) // 2
    der = encode_dss_signature(int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big"))
    key = issuer.ec_key.public_key()
    return lambda: key.verify(der, signed, ec.ECDSA(hashes.SHA256()))


async def per_call_async(calls: int, make: Callable[[int], Awaitable[Any]]) -> float:
    """CPU µs a call (process time, so a busy neighbour does not count)."""
    started = time.process_time()
    for i in range(calls):
        await make(i)
    return (time.process_time() - started) / calls * 1e6


def per_call(calls: int, fn: Callable[[], None]) -> float:
    started = time.process_time()
    for _ in range(calls):
        fn()
    return (time.process_time() - started) / calls * 1e6


async def measure(issuer: TestIssuer, alg: str, calls: int) -> str:
    exp = int(time.time()) + 3600
    token = issuer.token(alg=alg, exp=exp)
    header = f"Bearer {token}"
    distinct = [f"Bearer {issuer.token(alg=alg, exp=exp)}" for _ in range(calls)]
    uncached, cached = verifier(issuer, 0), verifier(issuer, 60)
    await uncached.verify(header)  # the JWKS fetch happens here, outside the timing
    await cached.verify(header)
    check = bare_check(issuer, alg, token)
    bare = per_call(calls, check)
    every = await per_call_async(calls, lambda _: uncached.verify(header))
    hit = await per_call_async(calls, lambda _: cached.verify(header))
    miss = await per_call_async(calls, lambda i: cached.verify(distinct[i]))
    return (
        f"  {alg}: verified every request {every:6.1f} us, first use of a token (cache miss) {miss:6.1f} us,"
        f" the same token again (cache hit) {hit:5.1f} us; the signature check alone {bare:5.1f} us\n"
        f"         ratios: every request / signature alone = {every / bare:.1f}; every request / hit ="
        f" {every / hit:.0f}; hit / signature alone = {hit / bare:.2f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=5000, help="verifications per measurement")
    args = parser.parse_args()
    with serve_jwks() as issuer:
        lines = [asyncio.run(measure(issuer, alg, args.calls)) for alg in ("RS256", "ES256")]
    print(f"\nbearer-token verification, CPU per request ({os.cpu_count()} cores; {machine_speed()})")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
