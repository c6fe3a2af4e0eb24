"""Token rules T1-T5: which normalized components, in which order, make a token signature.

A signature joins its components with `|`; a rule with any missing or invalid component has no
signature and yields the blank token. The definitions are OpenToken's:

| rule | signature |
| --- | --- |
| T1 | LAST \\| FIRST[0] \\| SEX \\| BIRTH_DATE |
| T2 | LAST \\| FIRST \\| BIRTH_DATE \\| POSTAL[0:3] |
| T3 | LAST \\| FIRST \\| SEX \\| BIRTH_DATE |
| T4 | SSN digits \\| SEX \\| BIRTH_DATE |
| T5 | LAST \\| FIRST[0:3] \\| SEX |
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

BLANK_TOKEN = "0" * 64
"""The token of a rule whose inputs are missing or invalid (OpenToken's convention)."""


class Component(IntEnum):
    """A normalized value a signature is built from; the value is its index in a component row."""

    LAST_NAME = 0
    FIRST_NAME = 1
    FIRST_INITIAL = 2
    FIRST_NAME_3 = 3
    SEX = 4
    BIRTH_DATE = 5
    POSTAL_CODE_3 = 6
    SSN_DIGITS = 7


@dataclass(frozen=True)
class Rule:
    """A token rule: its id and the components of its signature, in order."""

    rule_id: str
    components: tuple[Component, ...]

    def signature(self, row: Sequence[str | None]) -> str | None:
        """The `|`-joined signature from a component row, or None when a component is missing."""
        parts = [row[c] for c in self.components]
        if any(p is None for p in parts):
            return None
        return "|".join(p for p in parts if p)


C = Component
RULES: tuple[Rule, ...] = (
    Rule("T1", (C.LAST_NAME, C.FIRST_INITIAL, C.SEX, C.BIRTH_DATE)),
    Rule("T2", (C.LAST_NAME, C.FIRST_NAME, C.BIRTH_DATE, C.POSTAL_CODE_3)),
    Rule("T3", (C.LAST_NAME, C.FIRST_NAME, C.SEX, C.BIRTH_DATE)),
    Rule("T4", (C.SSN_DIGITS, C.SEX, C.BIRTH_DATE)),
    Rule("T5", (C.LAST_NAME, C.FIRST_NAME_3, C.SEX)),
)
RULE_IDS: tuple[str, ...] = tuple(r.rule_id for r in RULES)
