"""Native envelope v1 → v2 (docs/adr/0005-record-schema-v2.md), checked against the ingest contract."""

from __future__ import annotations

import pytest

from exchange.core.errors import PoisonError
from exchange.normalizer.native import to_v2, upcast_v1, validate_envelope

V1 = {
    "schema_version": "v1",
    "record_type": "condition",
    "source": {"system": "ehr-a", "record_id": "c-1"},
    "subject": {
        "name": "Mary Ann Smith-Jones",
        "birth_date": "1980-02-03",
        "sex": "female",
        "ssn": "123-45-6789",
        "postal_code": "02139",
    },
    "data": {"code": {"system": "http://snomed.info/sct", "code": "44054006"}},
}


def test_v1_name_splits_on_the_last_space_and_postal_code_moves_into_address():
    v2 = upcast_v1(V1)
    assert v2["schema_version"] == "v2"
    assert v2["subject"] == {
        "given_names": ["Mary", "Ann"],
        "family_name": "Smith-Jones",
        "birth_date": "1980-02-03",
        "sex": "female",
        "ssn": "123-45-6789",
        "address": {"postal_code": "02139"},
    }
    assert v2["data"] == V1["data"] and v2["source"] == V1["source"]
    validate_envelope(v2)  # the upcast is a valid v2 envelope


def test_the_upcast_does_not_touch_its_input():
    upcast_v1(V1)
    assert V1["subject"]["name"] == "Mary Ann Smith-Jones"


def test_a_one_word_name_becomes_the_family_name_without_given_names():
    v2 = upcast_v1({**V1, "subject": {"name": "Cher", "birth_date": "1946-05-20"}})
    assert v2["subject"]["given_names"] == [] and v2["subject"]["family_name"] == "Cher"


def test_v2_passes_through_unchanged():
    v2 = upcast_v1(V1)
    assert to_v2(v2) == v2


def test_an_envelope_off_contract_is_poison_naming_pointers_not_values():
    bad = {**V1, "subject": {**V1["subject"], "ssn": "SECRET-CANARY-42"}}
    with pytest.raises(PoisonError) as caught:
        to_v2(bad)
    assert caught.value.error_class == "schema-invalid"
    assert "SECRET-CANARY-42" not in str(caught.value)
    assert "/subject/ssn" in str(caught.value)
