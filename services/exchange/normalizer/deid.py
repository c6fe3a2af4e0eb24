"""De-identification rules (HIPAA Safe Harbor, 45 CFR 164.514(b)(2)) and canonical id derivation.

- Birth dates keep the year only; for anyone 90 or older even the year goes (`age_over_89`).
- An age stated as an observation's value (LOINC age codes) of 90 years or more becomes 90.
- ZIP codes keep the first three digits, and '000' replaces the three-digit prefixes whose
  population is 20,000 or fewer (the HHS list from the 2000 census).
- Source ids (FHIR ids, partner record ids: possibly MRNs) are never stored; a canonical id is
  HMAC-SHA256(key, tenant | kind | source id) shaped as a UUID (version 8), so it is stable across
  replays and cannot be reversed by guessing MRNs without the key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from datetime import date
from decimal import Decimal

from exchange.normalizer.model import Demographics

RESTRICTED_ZIP3 = frozenset(
    {"036", "059", "063", "102", "203", "556", "692", "790", "821", "823", "830", "831", "878", "879", "884",
     "890", "893"}
)  # fmt: skip
"""Three-digit ZIP prefixes with 20,000 or fewer people (HHS Safe Harbor guidance, 2000 census)."""

_US_ZIP = re.compile(r"^\s*(\d{3})\d{2}(?:[-\s]?\d{4})?\s*$")
_YEAR = re.compile(r"^\s*(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")
SEXES = frozenset({"female", "male", "other", "unknown"})


def zip3(postal_code: str | None) -> str | None:
    """The Safe Harbor ZIP3 of a US ZIP (5 or 9 digits); None for anything else."""
    if not postal_code:
        return None
    match = _US_ZIP.match(postal_code)
    if match is None:
        return None
    prefix = match.group(1)
    return "000" if prefix in RESTRICTED_ZIP3 else prefix


def birth_year(birth_date: str | None, today: date) -> tuple[int | None, bool]:
    """(year, age_over_89): the year is withheld for people 90 or older on `today`.

    With only a year (or year-month) known the age is taken at its highest, so the rule errs
    towards withholding.
    """
    if not birth_date:
        return None, False
    match = _YEAR.match(birth_date)
    if match is None:
        return None, False
    year = int(match.group(1))
    month = int(match.group(2) or 1)
    day = int(match.group(3) or 1)
    if year > today.year:
        return None, False
    age = today.year - year
    if match.group(3) and (month, day) > (today.month, today.day):
        age -= 1
    if age >= 90:
        return None, True
    return year, False


AGE_CODES = frozenset({
    ("http://loinc.org", "30525-0"), ("http://loinc.org", "21612-7"), ("http://loinc.org", "29553-5"),
    ("http://loinc.org", "21611-9"), ("http://loinc.org", "63900-5"),
})  # fmt: skip
"""LOINC codes whose value is the person's age (age, reported, calculated, estimated, at death)."""
_YEARS_PER_UNIT = {"a": 1, "yr": 1, "year": 1, "years": 1, "mo": 12, "wk": 52, "d": 365}


def age_over_89(
    pairs: list[dict[str, str]], value: Decimal | None, unit: str | None
) -> tuple[Decimal | None, str | None]:
    """An age value of 90 years or more as 90 `a` (Safe Harbor aggregates ages over 89); others unchanged."""
    if value is None or not any((p["system"], p["code"]) in AGE_CODES for p in pairs):
        return value, unit
    per_year = _YEARS_PER_UNIT.get((unit or "a").lower())
    if per_year is None or value / per_year >= 90:
        return (Decimal(90), "a") if per_year else (None, None)
    return value, unit


def sex(value: str | None) -> str | None:
    value = (value or "").strip().lower()
    aliases = {"m": "male", "f": "female", "o": "other", "u": "unknown"}
    value = aliases.get(value, value)
    return value if value in SEXES else None


def demographics(birth_date: str | None, sex_value: str | None, postal_code: str | None, today: date) -> Demographics:
    year, over = birth_year(birth_date, today)
    return Demographics(birth_year=year, age_over_89=over, sex=sex(sex_value), zip3=zip3(postal_code))


class CanonicalIds:
    """Keyed, deterministic canonical ids for one tenant."""

    def __init__(self, key: bytes, tenant: str) -> None:
        self._mac = hmac.new(key, tenant.encode() + b"\x1f", hashlib.sha256)

    def of(self, kind: str, source_id: str) -> uuid.UUID:
        mac = self._mac.copy()
        mac.update(kind.encode() + b"\x1f" + source_id.encode())
        return uuid_from_digest(mac.digest())


def uuid_from_digest(digest: bytes) -> uuid.UUID:
    """A version-8 (custom) UUID from the first 16 bytes of a digest."""
    raw = bytearray(digest[:16])
    raw[6] = (raw[6] & 0x0F) | 0x80
    raw[8] = (raw[8] & 0x3F) | 0x80
    return uuid.UUID(bytes=bytes(raw))


def subject_id(key_id: str, tokens: tuple[str, str, str, str, str]) -> uuid.UUID:
    """The subject id of a token set (tokens are already keyed pseudonyms; plain SHA-256 suffices)."""
    return uuid_from_digest(hashlib.sha256("\x1f".join((key_id, *tokens)).encode()).digest())
