"""The multi-member gzip benchmark behind `hack/bench/gzip` (see that script for usage)."""

from __future__ import annotations

import argparse
import gzip
import time
import zlib
from collections.abc import Callable
from typing import Any

from exchange.core.errors import PayloadTooLarge
from exchange.core.http import GZIP_MAX_MEMBERS, gunzip_limited

LINE = b'{"resourceType": "Patient", "id": "%08d", "gender": "female", "birthDate": "1980-02-03"}\n'
NO_LIMIT = 1 << 40


def former(data: bytes, limit: int) -> bytes:
    """The loop gunzip_limited replaced: each member's inflater got all of the remaining input."""
    out, rest = bytearray(), data
    while True:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        out += inflater.decompress(rest, limit + 1 - len(out))
        rest = inflater.unused_data
        if not rest:
            return bytes(out)


def cpu_ms(fn: Callable[..., object], *args: Any, **kwargs: Any) -> float:
    started = time.process_time()
    fn(*args, **kwargs)
    return (time.process_time() - started) * 1e3


def members(kib: int) -> tuple[bytes, int]:
    """About `kib` KiB of gzip made of one member per NDJSON line, and the member count."""
    parts: list[bytes] = []
    size = 0
    while size < kib << 10:
        parts.append(gzip.compress(LINE % len(parts), 1))
        size += len(parts[-1])
    return b"".join(parts), len(parts)


def refused(body: bytes) -> bool:
    try:
        gunzip_limited(body, NO_LIMIT)
    except PayloadTooLarge:
        return True
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="512,1024,2048", help="KiB of gzip, comma separated")
    args = parser.parse_args()
    print("one gzip member per line; CPU ms; `now` without the member limit, `limited`: with it (refused)")
    print(f"{'KiB':>6} {'members':>8} {'now':>8} {'former':>9} {'former/now':>11} {'now µs/member':>14} "
          f"{'limited':>8}")  # fmt: skip
    for kib in (int(s) for s in args.sizes.split(",")):
        body, count = members(kib)
        assert gunzip_limited(body, NO_LIMIT, max_members=count) == former(body, NO_LIMIT)
        now = cpu_ms(gunzip_limited, body, NO_LIMIT, max_members=count)
        old = cpu_ms(former, body, NO_LIMIT)
        limited = cpu_ms(refused, body)
        assert count <= GZIP_MAX_MEMBERS or refused(body)
        print(f"{kib:>6} {count:>8} {now:>8.1f} {old:>9.1f} {old / now:>11.1f} {now * 1e3 / count:>14.2f} "
              f"{limited:>8.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
