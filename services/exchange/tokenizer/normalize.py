"""Text primitives of OpenToken-compatible normalization.

The patterns and word lists here are the *rules* of OpenToken / OpenLinkToken 2.x (facts a
compatible implementation must reproduce byte for byte); the code around them is ours. Every
function is pure and total: it never raises on odd input.
"""

from __future__ import annotations

import re
import unicodedata

# Latin-1 / Latin Extended letters NFD does not decompose. OpenLinkToken 2.x transliterates them
# before stripping diacritics (OpenToken 1.x dropped them), e.g. "Łukasz" -> "Lukasz".
_TRANSLITERATION: dict[str, str] = {
    "Æ": "AE", "æ": "ae", "Ð": "D", "ð": "d", "Ø": "O", "ø": "o", "Þ": "TH", "þ": "th",
    "ß": "ss", "ẞ": "SS", "Đ": "D", "đ": "d", "Ħ": "H", "ħ": "h", "\u0131": "i", "Ĳ": "IJ",
    "ĳ": "ij", "Ŀ": "L", "ŀ": "l", "Ł": "L", "ł": "l", "ŉ": "n", "Ŋ": "NG", "ŋ": "ng",
    "Œ": "OE", "œ": "oe", "Ŧ": "T", "ŧ": "t", "\u017f": "s", "Ƒ": "F", "ƒ": "f", "Ǆ": "DZ",
    "ǅ": "Dz", "ǆ": "dz", "Ǉ": "LJ", "ǈ": "Lj", "ǉ": "lj", "Ǌ": "NJ", "ǋ": "Nj", "ǌ": "nj",
    "Ǳ": "DZ", "ǲ": "Dz", "ǳ": "dz", "Ǽ": "AE", "ǽ": "ae", "Ǿ": "O", "ǿ": "o",
}  # fmt: skip
_TRANSLATE_TABLE = str.maketrans(_TRANSLITERATION)

# Values that stand for "no name"; compared case-insensitively, before and after normalization.
PLACEHOLDER_NAMES: frozenset[str] = frozenset(
    s.lower()
    for s in (
        "Unknown", "N/A", "None", "Test", "Sample", "Donor", "Patient", "Automation Test",
        "Automationtest", "patient not found", "patientnotfound", "<masked>", "Anonymous",
        "zzztrash", "Missing", "Unavailable", "Not Available", "NotAvailable",
    )
)  # fmt: skip

NON_LETTERS = re.compile(r"[^a-zA-Z]")
WHITESPACE = re.compile(r"\s+")

# Trailing generational suffixes: Jr/Sr/Junior/Senior, Roman numerals I-X, ordinals (2nd, 3rd...).
GENERATIONAL_SUFFIX = re.compile(
    r"(?:\s+(?:jr\.?|junior|sr\.?|senior|I{1,3}|IV|V|VI{0,3}|IX|X|\d+(?:st|nd|rd|th)))+$", re.IGNORECASE
)
# Leading honorifics, possibly repeated ("Dr. Rev. ..."); each must be followed by whitespace.
TITLES = re.compile(
    r"^\s*(?:(?:mr|mrs|ms|miss|dr|prof|capt|sir|col|gen|cmdr|lt|rabbi|father|brother|sister|hon"
    r"|honorable|reverend|rev|doctor)\.?\s+)+",
    re.IGNORECASE,
)
# A trailing middle initial: whitespace, one non-space character, an optional period.
TRAILING_INITIAL = re.compile(r"\s[^\s]\.?$")
# "Mary Ann" / "Jean.Paul": keep the first part when it has 3+ letters (hyphens do not split).
FIRST_PART = re.compile(r"^([A-Za-z]{3,})[\s./]+[A-Za-z]+(?:[\s./\-\u2010-\u2015\u2212]+[A-Za-z]+)*$")


def strip_diacritics(value: str) -> str:
    """Trim, transliterate Latin-Extended letters, then drop combining marks after NFD."""
    trimmed = value.strip()
    if trimmed.isascii():
        return trimmed
    decomposed = unicodedata.normalize("NFD", trimmed.translate(_TRANSLATE_TABLE))
    category = unicodedata.category
    return "".join(ch for ch in decomposed if not category(ch).startswith("M"))


def is_blank(value: str) -> bool:
    """True when the value is empty or whitespace only."""
    return not value.strip()


def is_placeholder(value: str) -> bool:
    """True when the value is one of the well-known placeholder names (case-insensitive)."""
    return value.lower() in PLACEHOLDER_NAMES
