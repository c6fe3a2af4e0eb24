"""HIPAA Safe Harbor: birth year only (none at 90+), 3-digit ZIP with the restricted prefixes as '000',
stated ages over 89 as 90."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from exchange.normalizer import deid

TODAY = date(2026, 6, 15)


@pytest.mark.parametrize(
    ("postal", "expected"),
    [
        ("02139", "021"),
        ("02139-4307", "021"),
        ("021394307", "021"),
        (" 10001 ", "100"),
        ("03601", "000"),  # restricted prefix
        ("89301", "000"),
        ("82301", "000"),
        ("K1A 0B1", None),  # not a US ZIP: nothing kept
        ("123", None),
        ("", None),
        (None, None),
    ],
)
def test_zip3_keeps_three_digits_and_zeroes_the_restricted_prefixes(postal, expected):
    assert deid.zip3(postal) == expected


def test_the_restricted_list_is_the_seventeen_hhs_prefixes():
    assert len(deid.RESTRICTED_ZIP3) == 17
    assert all(deid.zip3(p + "00") == "000" for p in deid.RESTRICTED_ZIP3)


@pytest.mark.parametrize(
    ("birth_date", "expected"),
    [
        ("1980-02-03", (1980, False)),
        ("1937-06-15", (None, True)),  # 89th birthday passed? no: turns 89 today → 89, kept… see next
        ("1936-06-15", (None, True)),  # exactly 90 today
        ("1936-06-16", (1936, False)),  # 89 until tomorrow
        ("1936", (None, True)),  # year only: the highest age counts
        ("1927-05-21", (None, True)),
        ("2030-01-01", (None, False)),
        ("garbage", (None, False)),
        (None, (None, False)),
    ],
)
def test_birth_year_is_withheld_from_90(birth_date, expected):
    if birth_date == "1937-06-15":
        expected = (1937, False)  # 89 years old today: still shown
    assert deid.birth_year(birth_date, TODAY) == expected


def test_sex_is_normalized_to_the_fhir_codes():
    assert [deid.sex(v) for v in ("F", "male", "Other", "u", "x", None)] == [
        "female", "male", "other", "unknown", None, None,
    ]  # fmt: skip


def test_canonical_ids_are_keyed_deterministic_and_tenant_scoped():
    a = deid.CanonicalIds(b"k1", "acme")
    assert a.of("Patient", "123") == deid.CanonicalIds(b"k1", "acme").of("Patient", "123")
    assert a.of("Patient", "123") != deid.CanonicalIds(b"k2", "acme").of("Patient", "123")
    assert a.of("Patient", "123") != deid.CanonicalIds(b"k1", "other").of("Patient", "123")
    assert a.of("Patient", "123") != a.of("Encounter", "123")
    assert a.of("Patient", "123").version == 8


AGE = [{"system": "http://loinc.org", "code": "30525-0"}]


@pytest.mark.parametrize(
    ("pairs", "value", "unit", "expected"),
    [
        (AGE, "95", "a", ("90", "a")),
        (AGE, "90", None, ("90", "a")),
        (AGE, "89", "a", ("89", "a")),
        (AGE, "1100", "mo", ("90", "a")),
        (AGE, "1000", "mo", ("1000", "mo")),
        (AGE, "95", "furlongs", (None, None)),  # a unit we cannot read: the value goes
        ([{"system": "http://loinc.org", "code": "8302-2"}], "170", "cm", ("170", "cm")),  # not an age
    ],
)
def test_an_age_over_89_stated_as_a_value_becomes_90(pairs, value, unit, expected):
    got_value, got_unit = deid.age_over_89(pairs, Decimal(value), unit)
    assert (None if got_value is None else str(got_value), got_unit) == expected
