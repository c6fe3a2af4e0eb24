"""Person attributes: validation and normalization, OpenToken / OpenLinkToken 2.x compatible.

Each `*_component` function takes the raw value and returns the normalized value exactly as it
enters a token signature (after the rule's expression: trimmed, upper-cased, substring'd), or
`None` when the value is invalid. They are pure, total (never raise) and cheap to memoize.

One deliberate difference from the Python reference: a social security number is validated
*after* normalization, as the Java reference does (ADR 0003). Python validates the raw text, so it
accepts "000123456" (area 000) and rejects " 123-45-6780" (leading space); we do the opposite.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from enum import StrEnum
from typing import NamedTuple

from exchange.tokenizer.normalize import (
    FIRST_PART,
    GENERATIONAL_SUFFIX,
    NON_LETTERS,
    TITLES,
    TRAILING_INITIAL,
    WHITESPACE,
    is_blank,
    is_placeholder,
    strip_diacritics,
)


class Attribute(StrEnum):
    """The person attributes T1-T5 read; values are the OpenToken attribute names."""

    FIRST_NAME = "FirstName"
    LAST_NAME = "LastName"
    BIRTH_DATE = "BirthDate"
    SEX = "Sex"
    POSTAL_CODE = "PostalCode"
    SSN = "SocialSecurityNumber"


ATTRIBUTES: tuple[Attribute, ...] = tuple(Attribute)


class FirstName(NamedTuple):
    """The three forms of a first name that rules use: whole, first letter, first three."""

    full: str
    initial: str
    first3: str


# --- names --------------------------------------------------------------------------------

MAX_NAME_LENGTH = 128
"""Longer names are invalid. OpenToken has no bound, but its suffix pattern backtracks
quadratically on long inputs: one crafted value could stall a worker (ADR 0003)."""
# Collapsing whitespace runs to their first character changes no decision of the name patterns
# (they test whitespace only by class) and removes their worst quadratic case.
_WHITESPACE_RUN = re.compile(r"(\s)\s+")
_ASCII_DIGITS = str.maketrans("", "", "0123456789")


def _plain_name_letters(raw: str) -> str:
    """Normalization of a name made only of ASCII letters and digits ("Smith", "James123").

    The fast path of both name normalizers, equal to the full one for such names: with no
    whitespace, no punctuation and no diacritics, none of the title, suffix, initial or
    compound-name patterns can match (each needs whitespace or a separator) and NFD changes
    nothing, so only the non-letters (here: digits) go. It skips ~3 us of regex work per
    distinct name, which is what a first pass over Synthea-style data pays for.
    """
    return raw if raw.isalpha() else raw.translate(_ASCII_DIGITS)


def normalize_first_name(raw: str) -> str:
    """Strip diacritics, titles, generational suffixes, a trailing initial and non-letters.

    A compound first name whose first part has 3+ letters keeps only that part ("Mary Ann").
    """
    if raw.isalnum() and raw.isascii():
        return _plain_name_letters(raw)
    value = _WHITESPACE_RUN.sub(r"\1", strip_diacritics(raw))
    without_title = TITLES.sub("", value).strip()
    if without_title:
        value = without_title
    without_suffix = GENERATIONAL_SUFFIX.sub("", value).strip()
    if without_suffix:
        value = without_suffix
    value = TRAILING_INITIAL.sub("", value).strip()
    first_part = FIRST_PART.match(value)
    if first_part:
        value = first_part.group(1)
    return NON_LETTERS.sub("", value)


def first_name_component(raw: str) -> FirstName | None:
    """The upper-cased first name forms, or None for blank, placeholder, too long or
    empty-after-cleaning."""
    if is_blank(raw) or is_placeholder(raw) or len(raw) > MAX_NAME_LENGTH:
        return None
    value = normalize_first_name(raw)
    if not value or is_placeholder(value):
        return None
    upper = value.upper()
    return FirstName(upper, upper[:1], upper[:3])


def normalize_last_name(raw: str) -> str:
    """Strip diacritics, generational suffixes (unless nothing else is left) and non-letters."""
    if raw.isalnum() and raw.isascii():
        return _plain_name_letters(raw)
    value = _WHITESPACE_RUN.sub(r"\1", strip_diacritics(raw))
    without_suffix = GENERATIONAL_SUFFIX.sub("", value)
    if not is_blank(without_suffix):
        value = without_suffix
    return NON_LETTERS.sub("", value)


_VOWELS = frozenset("aeiouAEIOU")


def last_name_component(raw: str) -> str | None:
    """The upper-cased last name, or None.

    Valid: 3+ letters, or 2 letters with a vowel, or "Ng"; never a placeholder; at most 128
    characters.
    """
    if is_blank(raw) or is_placeholder(raw) or len(raw) > MAX_NAME_LENGTH:
        return None
    value = normalize_last_name(raw)
    size = len(value)
    if size < 2 or is_placeholder(value):
        return None
    if size == 2 and not (_VOWELS.intersection(value) or value.lower() == "ng"):
        return None
    return value.upper()


# --- sex ----------------------------------------------------------------------------------

_SEX_SHAPE = re.compile(r"^\s*([Mm](ale)?|[Ff](emale)?)\s*$")


def sex_component(raw: str) -> str | None:
    """ "MALE" or "FEMALE" for M/Male/F/Female in any case (surrounding blanks allowed), else None."""
    if not _SEX_SHAPE.match(raw):
        return None
    return "MALE" if raw.strip()[0] in "Mm" else "FEMALE"


# --- birth date ---------------------------------------------------------------------------

MIN_BIRTH_DATE = date(1910, 1, 1)
_DATE_SHAPE = re.compile(
    r"^(?:\d{4}[-/]\d{2}[-/]\d{2}|\d{2}[-./]\d{2}[-./]\d{4}|"
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{3})?(?:Z|[+-]\d{2}:\d{2})?)$"
)
# Tried in this order; the shapes do not overlap, so the order only matters for speed.
_DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%m/%d/%Y", "%m-%d-%Y", "%d.%m.%Y")
_TIMESTAMP_FORMATS = ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z")


def parse_birth_date(raw: str) -> date | None:
    """The calendar date of a supported format, or None (range not checked).

    Formats: yyyy-MM-dd, yyyy/MM/dd, MM/dd/yyyy, MM-dd-yyyy, dd.MM.yyyy and ISO-8601 timestamps
    with Z or an offset (the local date is kept, no time-zone conversion).
    """
    if len(raw) == 10 and raw.isascii():
        # Fast paths for the usual fixed-width forms, without the shape regex or strptime.
        if raw[4] == "-" == raw[7]:
            # yyyy-MM-dd: with this length and these dashes, `fromisoformat` accepts exactly
            # 4-2-2 ASCII digits making a real date. On anything else the general path below
            # decides, here and in the branch after (usually None, but it is the one authority).
            try:
                return date.fromisoformat(raw)
            except ValueError:
                pass
        elif raw[2] == raw[5] and raw[2] in "/-.":
            # MM/dd/yyyy, MM-dd-yyyy, dd.MM.yyyy, rearranged to yyyy-MM-dd: `fromisoformat` then
            # checks the digits and the calendar in C (int() of three slices costs twice as much).
            month, day = (raw[3:5], raw[0:2]) if raw[2] == "." else (raw[0:2], raw[3:5])
            try:
                return date.fromisoformat(f"{raw[6:10]}-{month}-{day}")
            except ValueError:
                pass
    if not _DATE_SHAPE.match(raw):
        return None
    text = raw.strip()
    if len(text) == 10 and text.isascii():
        # Fast path, equivalent to strptime for fixed-width ASCII digits; mixed separators fail.
        if text[4] in "-/":  # yyyy-MM-dd, yyyy/MM/dd
            sep, other, year, month, day = text[4], text[7], text[0:4], text[5:7], text[8:10]
        else:  # MM/dd/yyyy, MM-dd-yyyy, dd.MM.yyyy
            sep, other, year = text[2], text[5], text[6:10]
            month, day = (text[3:5], text[0:2]) if sep == "." else (text[0:2], text[3:5])
        if sep != other:
            return None
        try:
            return date(int(year), int(month), int(day))
        except ValueError:
            return None
    for fmt in (*_DATE_FORMATS, *_TIMESTAMP_FORMATS):
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    return None


def birth_date_component(parsed: date | None, today: date) -> str | None:
    """yyyy-MM-dd when the date lies in [1910-01-01, today], else None."""
    if parsed is None or parsed < MIN_BIRTH_DATE or parsed > today:
        return None
    return parsed.isoformat()


# --- postal code --------------------------------------------------------------------------

_US_SHAPE = re.compile(r"^\s*(\d{3}|\d{4}|\d{5}(-\d{4})?|\d{9})\s*$")
# Placeholder ZIPs; a code is refused when it *starts with* one of these.
US_REFUSED_PREFIXES = (
    "11111", "22222", "33333", "66666", "77777", "99999", "01234", "12345", "54321", "98765",
    "000", "555", "888",
)  # fmt: skip
_CA_SHAPE = re.compile(r"^\s*[A-Za-z]\d[A-Za-z](\s?\d([A-Za-z]\d?)?)?\s*$")
_CA_REFUSED = frozenset(
    {"A1A 1A1", "X0X 0X0", "Y0Y 0Y0", "Z0Z 0Z0", "A0A 0A0", "B1B 1B1", "C2C 2C2", "K1A 0A6", "H0H 0H0"}
)
# Government / Santa prefixes refused when the rest of the code is padding.
_CA_REFUSED_ZIP3 = frozenset({"K1A", "M7A", "H0H"})
_CA_PADDING = re.compile(r"^(?:000|\d[A-Z]0)$")


def _canadian_normalized(compact: str) -> str:
    """A1A 1A1 form of a 3-6 character Canadian code, padding partial codes (A1A -> A1A 000)."""
    upper = compact.upper()
    size = len(upper)
    if size == 3:
        return f"{upper} 000"
    if size == 4:
        return f"{upper[:3]} {upper[3]}A0"
    if size == 5:
        return f"{upper[:3]} {upper[3:]}0"
    return f"{upper[:3]} {upper[3:6]}"


def postal_code_component(raw: str) -> str | None:
    """The first three characters of the normalized US ZIP or Canadian postal code, or None.

    US: 3, 4, 5, 5+4 or 9 digits, not starting with a placeholder. Canada: A1A, A1A1, A1A1A,
    A1A 1A1 (one optional blank), not a placeholder code or a padded government prefix.
    """
    if len(raw) == 5 and raw.isdigit() and raw.isascii():  # the usual ZIP-5, without the regex
        return None if raw.startswith(US_REFUSED_PREFIXES) else raw[:3]
    if _US_SHAPE.match(raw):
        trimmed = raw.strip()
        if trimmed.startswith(US_REFUSED_PREFIXES):
            return None
        return trimmed[:3]
    if _CA_SHAPE.match(raw):
        normalized = _canadian_normalized(WHITESPACE.sub("", raw.strip()))
        if normalized in _CA_REFUSED:
            return None
        if normalized[:3] in _CA_REFUSED_ZIP3 and _CA_PADDING.match(normalized[4:]):
            return None
        return normalized[:3]
    return None


# --- social security number ----------------------------------------------------------------

_DIGITS = re.compile(r"\d+")
_SSN_SHAPE = re.compile(r"^(?:\d{7,9}(?:[.]0*)?)$|(?:^(?!000|666|9\d\d)(\d{3})-?(?!00)(\d{2})-?(?!0000)(\d{4})$)")
# Placeholder SSNs seen in real data (OpenLinkToken 2.2 list).
_SSN_REFUSED = frozenset(
    {
        "111-11-1111", "222-22-2222", "333-33-3333", "444-44-4444", "555-55-5555", "777-77-7777",
        "888-88-8888", "001-01-0001", "001-01-0101", "001-01-9999", "001-10-0110", "001-11-1111",
        "001-12-2334", "001-23-4567", "007-77-7777", "010-10-1010", "011-11-1111", "012-34-5678",
        "022-22-2222", "055-55-5555", "077-77-7777", "087-65-4321", "088-88-8888", "098-76-5432",
        "099-99-9999", "100-10-1000", "111-11-1112", "111-11-1234", "111-11-9999", "111-22-1111",
        "111-22-2333", "111-22-3333", "121-21-2121", "123-12-1234", "123-12-3123", "123-45-1234",
        "123-45-6788", "123-45-6789", "123-45-6798", "123-45-6879", "123-45-6987", "123-45-7896",
        "199-99-9999", "222-33-4444", "299-99-9999", "399-99-9999", "454-54-5454", "499-99-9999",
        "599-99-9999", "699-99-9999", "799-99-9999", "899-99-9999",
    }
)  # fmt: skip


SSN_REFUSED_DIGITS = frozenset(s.replace("-", "") for s in _SSN_REFUSED)
# Nine ASCII digits passing the area (not 000/666/9xx), group (not 00) and serial (not 0000) rules.
VALID_SSN_DIGITS = re.compile(r"(?!000|666|9)\d{3}(?!00)\d{2}(?!0000)\d{4}", re.ASCII).fullmatch


def normalize_ssn(raw: str) -> str | None:
    """xxx-xx-xxxx from 7-9 digits (blanks and dashes ignored, a decimal tail dropped, 7-8
    digits left-padded with zeros), or None when the value is not SSN-shaped."""
    digits = WHITESPACE.sub("", raw.strip()).replace("-", "")
    dot = digits.find(".")
    if dot != -1:
        digits = digits[:dot]
    if not 7 <= len(digits) <= 9 or not _DIGITS.fullmatch(digits):
        return None
    if len(digits) < 9:
        digits = f"{int(digits):09d}"
    return f"{digits[:3]}-{digits[3:5]}-{digits[5:]}"


def ssn_component(raw: str) -> str | None:
    """The nine digits of a valid SSN, or None.

    Validated after normalization (the Java rule): area not 000/666/9xx, group not 00, serial
    not 0000, and not a known placeholder.
    """
    # Fast path: dashes anywhere and nine ASCII digits (so "123-45-6789" and "123456789"), the
    # general path's result for such input, with the area/group/serial rules in one C-level
    # match. Anything else, valid or not, takes the general path below.
    digits = raw.replace("-", "")
    if VALID_SSN_DIGITS(digits):
        return None if digits in SSN_REFUSED_DIGITS else digits
    normalized = normalize_ssn(raw)
    if normalized is None or normalized in _SSN_REFUSED or not _SSN_SHAPE.match(normalized):
        return None
    return normalized.replace("-", "")
