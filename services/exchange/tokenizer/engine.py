"""The fast tokenizer: person attributes in, five OpenToken-compatible tokens out.

token = base64(HMAC-SHA256(secret, hex(SHA-256(signature)))) per rule, the blank token when the
rule has no signature. Where the time goes, and what is done about it:

- Normalization is memoized per attribute on the raw text (names, dates, sexes and ZIP codes
  repeat a lot across people; SSNs do not and are normalized on a fast path instead). Memo tables
  are bounded and cleared when full, so memory stays flat however many records stream through.
- The HMAC is keyed once: the inner and outer SHA-256 states (key XOR ipad / opad, RFC 2104) are
  precomputed and `.copy()`-ed per token, so a token costs four SHA-256 compressions in C and no
  Python-level HMAC object (the stdlib `hmac` object copy is ~40 % slower).
- Signatures are joined as bytes from pre-encoded components picked by C-level `itemgetter`.
- T5 (LAST|FIR|SEX) is shared by many people, so its tokens are memoized on the signature.

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
from typing import Any, NamedTuple

from exchange.tokenizer.attributes import (
    ATTRIBUTES,
    MIN_BIRTH_DATE,
    SSN_REFUSED_DIGITS,
    US_REFUSED_PREFIXES,
    VALID_SSN_DIGITS,
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
    """Tokens in `RULE_IDS` order and validity flags (`Validity` values) in `ATTRIBUTES` order; no PII."""

    tokens: tuple[str, ...]
    validity: tuple[str, ...]

    def tokens_by_rule(self) -> dict[str, str]:
        return dict(zip(RULE_IDS, self.tokens, strict=True))

    def validity_by_attribute(self) -> dict[str, Validity]:
        return {a.value: Validity(v) for a, v in zip(ATTRIBUTES, self.validity, strict=True)}


class HmacSha256:
    """HMAC-SHA256 with the key schedule done once; `digest()` copies the keyed states."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    @property
    def states(self) -> tuple[Any, Any]:
        """The keyed inner and outer SHA-256 states; `.copy()` them, never update them."""
        return self._inner, self._outer

    def digest(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


# Plain `str` flags in the hot path (equal to the Validity members): tuples holding only strings
# are untracked by the cyclic GC, which otherwise rescans every memo entry on full collections.
_VALID, _INVALID, _MISSING = str(Validity.VALID.value), str(Validity.INVALID.value), str(Validity.MISSING.value)
# Rules whose signatures repeat across people (no birth date, no SSN) get their tokens memoized on
# the signature: T5 = LAST|FIR|SEX is shared by many people in any real population. They must come
# last in RULES, so tokens stay in rule order.
_MEMO_RULES = frozenset({"T5"})
_HASHED = tuple(itemgetter(*r.components) for r in RULES if r.rule_id not in _MEMO_RULES)
_MEMOIZED = tuple(itemgetter(*r.components) for r in RULES if r.rule_id in _MEMO_RULES)
assert [r.rule_id for r in RULES[len(_HASHED) :]] == sorted(_MEMO_RULES), "memoized rules must come last"


class Tokenizer:
    """OpenToken-compatible tokenizer bound to one secret. Use one per thread: the memo tables
    are plain dicts (safe under the GIL, but clearing is not coordinated)."""

    def __init__(self, secret: bytes, key_id: str = "", memo_size: int = 1 << 17) -> None:
        if not secret:
            raise ValueError("the tokenization secret is empty")
        self.key_id = key_id
        self._mac = HmacSha256(secret)
        self._memo_size = memo_size
        self._memos: tuple[dict[str | None, Any], ...] = tuple({} for _ in range(5))
        self._token_memo: dict[tuple[bytes, ...], str] = {}
        self._reset_memos()

    def _reset_memos(self) -> None:
        self._token_memo.clear()
        for memo in self._memos:
            memo.clear()
        first, last, dob, sex, postal = self._memos
        first[None] = (None, None, None, _MISSING)
        dob[None] = (None, None, _MISSING)
        for memo in (last, sex, postal):
            memo[None] = (None, _MISSING)

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
        """Stream `tokenize` over many people; the hot path of the service, the CLI and the bench.

        Written flat on purpose (locals, inlined memo lookups, no per-attribute calls on a hit):
        this loop is where the time goes once hashing is taken out.
        """
        current = today or date.today()
        first_memo, last_memo, dob_memo, sex_memo, postal_memo = self._memos
        sha256 = hashlib.sha256
        inner, outer = self._mac.states
        hashed, memoized, token_memo = _HASHED, _MEMOIZED, self._token_memo
        blank, valid, invalid, missing, miss = BLANK_TOKEN, _VALID, _INVALID, _MISSING, _MISS
        new_record = tuple.__new__
        valid_ssn_digits, refused_ssns = VALID_SSN_DIGITS, SSN_REFUSED_DIGITS
        memo_size = self._memo_size
        # Housekeeping every `mask + 1` records (a power of two no larger than the memo bound).
        mask = (1 << min(10, max(memo_size, 1).bit_length() - 1)) - 1
        for count, (fn, ln, dob, sex, postal, ssn) in enumerate(people):
            if not count & mask:
                if today is None:
                    current = date.today()  # long streams may cross midnight
                if max(len(self._token_memo), *map(len, self._memos)) > memo_size:
                    self._reset_memos()
            entry = first_memo.get(fn, miss)
            if entry is miss:
                entry = first_memo[fn] = _first_entry(fn)
            f_full, f_initial, f_first3, f_flag = entry
            entry = last_memo.get(ln, miss)
            if entry is miss:
                entry = last_memo[ln] = _entry(last_name_component, ln)
            last, l_flag = entry
            entry = dob_memo.get(dob, miss)
            if entry is miss:
                entry = dob_memo[dob] = _dob_entry(dob)
            born, dob_text, d_flag = entry
            if born is not None and born > current:
                dob_text, d_flag = None, invalid
            entry = sex_memo.get(sex, miss)
            if entry is miss:
                entry = sex_memo[sex] = _entry(sex_component, sex)
            sex_text, s_flag = entry
            entry = postal_memo.get(postal, miss)
            if entry is miss:
                entry = postal_memo[postal] = _postal_entry(postal)
            postal3, p_flag = entry
            # SSNs hardly repeat: not memoized (a memo would only add inserts and GC work). The
            # usual shapes take `ssn_component`'s fast path inline: one call fewer a record.
            if ssn is None:
                ssn9, n_flag = None, missing
            elif valid_ssn_digits(digits := ssn.replace("-", "")) and digits not in refused_ssns:
                ssn9, n_flag = digits.encode(), valid
            else:
                ssn_text = ssn_component(ssn)
                ssn9, n_flag = (None, _flag(ssn, None)) if ssn_text is None else (ssn_text.encode(), valid)

            row = (last, f_full, f_initial, f_first3, sex_text, dob_text, postal3, ssn9)
            tokens: list[str] = []
            append = tokens.append
            for pick in hashed:
                parts = pick(row)
                if None in parts:
                    append(blank)
                    continue
                h_in = inner.copy()
                h_in.update(sha256(b"|".join(parts)).hexdigest().encode())
                h_out = outer.copy()
                h_out.update(h_in.digest())
                append(b2a_base64(h_out.digest(), newline=False).decode())
            for pick in memoized:
                parts = pick(row)
                if None in parts:
                    append(blank)
                    continue
                token = token_memo.get(parts)
                if token is None:
                    h_in = inner.copy()
                    h_in.update(sha256(b"|".join(parts)).hexdigest().encode())
                    h_out = outer.copy()
                    h_out.update(h_in.digest())
                    token = token_memo[parts] = b2a_base64(h_out.digest(), newline=False).decode()
                append(token)
            yield new_record(TokenizedRecord, (tuple(tokens), (f_flag, l_flag, d_flag, s_flag, p_flag, n_flag)))


def _flag(raw: str, component: object) -> str:
    if component is not None:
        return _VALID
    return _MISSING if not raw.strip() else _INVALID


# Memo entries hold components UTF-8 encoded: signatures are joined as bytes, saving an encode
# per token (UTF-8 of a join is the join of the UTF-8s).
def _entry(normalize: Callable[[str], str | None], raw: str | None) -> tuple[bytes | None, str]:
    if raw is None:  # pre-seeded in the memo; here for completeness
        return None, _MISSING
    component = normalize(raw)
    if component is None:
        return None, _flag(raw, None)
    return component.encode(), _VALID


def _first_entry(raw: str | None) -> tuple[bytes | None, bytes | None, bytes | None, str]:
    if raw is None:
        return None, None, None, _MISSING
    name = first_name_component(raw)
    if name is None:
        return None, None, None, _flag(raw, None)
    return name.full.encode(), name.initial.encode(), name.first3.encode(), _VALID


def _postal_entry(raw: str | None) -> tuple[bytes | None, str]:
    """`_entry(postal_code_component, raw)` with the usual ZIP-5 inline: ZIP codes are numerous
    enough that a first pass misses the memo on most of them, and a call costs as much as the
    check."""
    if raw is not None and len(raw) == 5 and raw.isdigit() and raw.isascii():
        return (None, _INVALID) if raw.startswith(US_REFUSED_PREFIXES) else (raw[:3].encode(), _VALID)
    return _entry(postal_code_component, raw)


def _dob_entry(raw: str | None) -> tuple[date | None, bytes | None, str]:
    """(date, yyyy-MM-dd, flag) with the lower bound applied; the upper bound (today) is checked
    per record because it moves."""
    if raw is None:
        return None, None, _MISSING
    if len(raw) == 10 and raw[4] == "-" == raw[7] and raw.isascii():
        # Birth dates are many (a first pass misses the memo on about half of them), so the usual
        # yyyy-MM-dd is inlined: `fromisoformat` accepts exactly that shape here (see
        # `parse_birth_date`), and the raw text is then already the canonical form.
        try:
            born = date.fromisoformat(raw)
        except ValueError:
            pass
        else:
            return (born, raw.encode(), _VALID) if born >= MIN_BIRTH_DATE else (None, None, _INVALID)
    parsed = parse_birth_date(raw)
    if parsed is None or parsed < MIN_BIRTH_DATE:
        return None, None, _flag(raw, None)
    return parsed, parsed.isoformat().encode(), _VALID
