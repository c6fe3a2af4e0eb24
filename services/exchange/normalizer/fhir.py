"""Pure helpers that read FHIR R4 datatypes into canonical values (codes, dates, references).

Only coded values (system + code), statuses, years of dates and numbers are read; `display`,
`text`, narrative, notes, units' free text and every other free-text element are ignored on
purpose (HIPAA Safe Harbor, ADR 0014). Anything malformed
raises `PoisonError("unmappable", ...)` naming the element, never its value.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from exchange.core.errors import PoisonError

_SYSTEM = re.compile(r"^\S{1,255}$")  # a code system: a URI without whitespace
_CODE = re.compile(r"^[^\r\n\t]{1,128}$")  # a code: one short line
_PARTIAL = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
_REF = re.compile(r"^(?:.*/)?([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/.*)?$")


def unmappable(where: str, why: str) -> PoisonError:
    return PoisonError("unmappable", f"{where}: {why}")


def token(value: Any, where: str) -> str | None:
    """A short code-like string (status, code, class); free text is refused, not stored."""
    if value is None:
        return None
    if not isinstance(value, str) or not _CODE.match(value):
        raise unmappable(where, "not a code")
    return value


def codings(concept: Any, where: str) -> list[dict[str, str]]:
    """The (system, code) pairs of a CodeableConcept; display and text are dropped."""
    if concept is None:
        return []
    if not isinstance(concept, dict) or not isinstance(concept.get("coding", []), list):
        raise unmappable(where, "not a CodeableConcept")
    out: list[dict[str, str]] = []
    for i, coding in enumerate(concept.get("coding", [])):
        out.extend(coding_pair(coding, f"{where}/coding/{i}"))
    return out


def coding_pair(coding: Any, where: str) -> list[dict[str, str]]:
    if not isinstance(coding, dict):
        raise unmappable(where, "not a Coding")
    system, code = coding.get("system"), coding.get("code")
    if code is None:
        return []
    if system is not None and (not isinstance(system, str) or not _SYSTEM.match(system)):
        raise unmappable(f"{where}/system", "not a URI")
    return [{"system": system or "", "code": str(token(code, f"{where}/code"))}]


def first_code(pairs: list[dict[str, str]]) -> tuple[str | None, str | None]:
    if not pairs:
        return None, None
    return pairs[0]["system"] or None, pairs[0]["code"]


def concept_code(concept: Any, where: str) -> str | None:
    """The first code of a CodeableConcept (statuses, categories)."""
    return first_code(codings(concept, where))[1]


def instant(value: Any, where: str) -> datetime | None:
    """A FHIR date / dateTime / instant as an aware datetime (partial dates: first instant, UTC)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise unmappable(where, "not a date")
    partial = _PARTIAL.match(value)
    try:
        if partial:
            year, month, day = partial.group(1), partial.group(2) or "01", partial.group(3) or "01"
            return datetime(int(year), int(month), int(day), tzinfo=UTC)
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise unmappable(where, "not a date") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def year(value: Any, where: str) -> int | None:
    """The year of a FHIR date / dateTime / instant as written (Safe Harbor keeps nothing finer)."""
    moment = instant(value, where)
    return None if moment is None else moment.year


def period_years(value: Any, where: str) -> tuple[int | None, int | None]:
    """The years of a Period's start and end."""
    if value is None:
        return None, None
    if not isinstance(value, dict):
        raise unmappable(where, "not a Period")
    return year(value.get("start"), f"{where}/start"), year(value.get("end"), f"{where}/end")


def decimal(value: Any, where: str) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise unmappable(where, "not a number")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise unmappable(where, "not a number") from None
    if not number.is_finite():
        raise unmappable(where, "not a number")
    return number


def reference(value: Any, where: str, bundle_urls: dict[str, tuple[str, str]], expected: str) -> tuple[str, str] | None:
    """(resourceType, id) of a Reference: `Type/id`, an absolute URL, or a `urn:uuid:`.

    A `urn:uuid:` is looked up among the Bundle's fullUrls, else taken as an id of the `expected`
    type (bulk exports reference that way). A conditional (`Type?identifier=...`) or contained
    (`#x`) reference resolves to None.
    """
    if value is None:
        return None
    if not isinstance(value, dict):
        raise unmappable(where, "not a Reference")
    ref = value.get("reference")
    if ref is None:
        return None
    if not isinstance(ref, str):
        raise unmappable(where, "not a Reference")
    if ref in bundle_urls:
        return bundle_urls[ref]
    if ref.startswith("urn:uuid:"):
        return expected, ref.removeprefix("urn:uuid:")
    if ref.startswith("urn:"):
        return None
    match = _REF.match(ref)
    return (match.group(1), match.group(2)) if match else None
