"""The fast tokenizer: person attributes in, five OpenToken-compatible tokens out.

token = base64(HMAC-SHA256(secret, hex(SHA-256(signature)))) per rule, the blank token when the
rule has no signature. Where the time goes, and what is done about it:

- Normalization is memoized per attribute on the raw text (names, dates, sexes and ZIP prefixes
  repeat a lot across people); the memo tables are bounded and cleared when full, so memory stays
  flat however many records stream through.
- The HMAC is keyed once: the inner and outer SHA-256 states (key XOR ipad / opad, RFC 2104) are
  precomputed and `.copy()`-ed per token, so a token costs three SHA-256 compressions in C and no
  Python-level HMAC object.
- Signatures are assembled by C-level `itemgetter` over a component row.

The memo tables hold normalized PII in process memory, where the raw PII already is while in
flight; they never leave the process and are dropped with the `Tokenizer`.
"""

from __future__ import annotations

import hashlib
from binascii import b2a_base64
from collections.abc import Callable, Iterable, Iterator
from datetime import date
from enum import StrEnum
from operator import itemgetter
from typing import Any, NamedTuple, TypeVar

from exchange.tokenizer.attributes import (
    ATTRIBUTES,
    FirstName,
    birth_date_component,
    first_name_component,
    last_name_component,
    parse_birth_date,
    postal_code_component,
    sex_component,
    ssn_component,
)
from exchange.tokenizer.rules import BLANK_TOKEN, RULE_IDS, RULES

_BLOCK = 64  # SHA-256 block size in bytes
_MISS: Any = object()
T = TypeVar("T")


class PersonAttributes(NamedTuple):
    """Raw identity attributes of one person; None means the attribute was not supplied."""

    first_name: str | None = None
    last_name: str | None = None
    birth_date: str | None = None
    sex: str | None = None
    postal_code: str | None = None
    ssn: str | None = None


class Validity(StrEnum):
    """Per-attribute outcome: usable, present but rejected, or absent/blank."""

    VALID = "valid"
    INVALID = "invalid"
    MISSING = "missing"


class TokenizedRecord(NamedTuple):
    """Tokens in `RULE_IDS` order and validity flags in `ATTRIBUTES` order; no PII."""

    tokens: tuple[str, ...]
    validity: tuple[Validity, ...]

    def tokens_by_rule(self) -> dict[str, str]:
        return dict(zip(RULE_IDS, self.tokens, strict=True))

    def validity_by_attribute(self) -> dict[str, Validity]:
        return {a.value: v for a, v in zip(ATTRIBUTES, self.validity, strict=True)}


class HmacSha256:
    """HMAC-SHA256 with the key schedule done once; `digest()` copies the keyed states."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def digest(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


_VALID, _INVALID, _MISSING = Validity.VALID, Validity.INVALID, Validity.MISSING
_SIGNATURES = tuple(itemgetter(*rule.components) for rule in RULES)


class Tokenizer:
    """OpenToken-compatible tokenizer bound to one secret. Thread-compatible, not thread-safe
    for the memo tables' bounded clearing; use one per worker."""

    def __init__(self, secret: bytes, key_id: str = "", memo_size: int = 1 << 17) -> None:
        if not secret:
            raise ValueError("the tokenization secret is empty")
        self.key_id = key_id
        self._mac = HmacSha256(secret)
        self._memo_size = memo_size
        self._first: dict[str, FirstName | None] = {}
        self._last: dict[str, str | None] = {}
        self._dob: dict[str, date | None] = {}
        self._sex: dict[str, str | None] = {}
        self._postal: dict[str, str | None] = {}
        self._ssn: dict[str, str | None] = {}

    def token(self, signature: str | None) -> str:
        """The token of one signature; the blank token for None or a blank signature."""
        if signature is None or not signature.strip():
            return BLANK_TOKEN
        digest = hashlib.sha256(signature.encode()).hexdigest().encode()
        return b2a_base64(self._mac.digest(digest), newline=False).decode()

    def tokenize(self, person: PersonAttributes, today: date | None = None) -> TokenizedRecord:
        """Tokens and validity flags of one person. Never raises on bad attribute values."""
        return next(self.tokenize_many((person,), today))

    def tokenize_many(self, people: Iterable[PersonAttributes], today: date | None = None) -> Iterator[TokenizedRecord]:
        """Stream `tokenize` over many people; the hot path of the service, the CLI and the bench."""
        current = today or date.today()
        size = self._memo_size
        memo = _memoize
        first_memo, last_memo, dob_memo = self._first, self._last, self._dob
        sex_memo, postal_memo, ssn_memo = self._sex, self._postal, self._ssn
        sha256 = hashlib.sha256
        inner, outer = self._mac._inner, self._mac._outer  # noqa: SLF001 - hot loop, same module
        signatures = _SIGNATURES
        blank = BLANK_TOKEN
        for count, (fn, ln, dob, sex, postal, ssn) in enumerate(people):
            if today is None and not count & 0xFFFF:
                current = date.today()  # long streams may cross midnight
            first = memo(first_memo, first_name_component, fn, size)
            last = memo(last_memo, last_name_component, ln, size)
            born = memo(dob_memo, parse_birth_date, dob, size)
            dob_text = birth_date_component(born, current) if born is not None else None
            sex_text = memo(sex_memo, sex_component, sex, size)
            postal3 = memo(postal_memo, postal_code_component, postal, size)
            ssn9 = memo(ssn_memo, ssn_component, ssn, size)
            if first is None:
                row: tuple[str | None, ...] = (last, None, None, None, sex_text, dob_text, postal3, ssn9)
            else:
                row = (last, first.full, first.initial, first.first3, sex_text, dob_text, postal3, ssn9)
            tokens = []
            for pick in signatures:
                parts = pick(row)
                if None in parts:
                    tokens.append(blank)
                    continue
                h_in = inner.copy()
                h_in.update(sha256("|".join(parts).encode()).hexdigest().encode())
                h_out = outer.copy()
                h_out.update(h_in.digest())
                tokens.append(b2a_base64(h_out.digest(), newline=False).decode())
            validity = (
                _flag(fn, first),
                _flag(ln, last),
                _flag(dob, dob_text),
                _flag(sex, sex_text),
                _flag(postal, postal3),
                _flag(ssn, ssn9),
            )
            yield TokenizedRecord(tuple(tokens), validity)


def _memoize(memo: dict[str, T | None], fn: Callable[[str], T | None], raw: str | None, size: int) -> T | None:
    if raw is None:
        return None
    value = memo.get(raw, _MISS)
    if value is _MISS:
        if len(memo) >= size:
            memo.clear()
        value = memo[raw] = fn(raw)
    return value  # type: ignore[no-any-return]


def _flag(raw: str | None, component: object) -> Validity:
    if component is not None:
        return _VALID
    if raw is None or not raw.strip():
        return _MISSING
    return _INVALID
