"""Strict JSON and FHIR numbers at the edge: an object that repeats a key is refused (orjson,
which the normalizer reads records back with, keeps the last one), and FHIR's integer elements
hold 32-bit integers, as FHIR R4 says and JSON cannot."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from exchange.ingest.validation import DuplicateKey, RecordInvalid, classify

OBSERVATION = {"resourceType": "Observation", "status": "final", "code": {"text": "count"}}


def fhir(**fields: Any) -> bytes:
    return orjson.dumps({**OBSERVATION, **fields})


@pytest.mark.parametrize(
    "data",
    [b'{"resourceType": "Bundle", "type": "collection", "resourceType": "Patient"}',
     b'{"resourceType": "Patient", "name": [{"family": "Doe", "family": "Roe"}]}',
     b'{"resourceType": "Patient", "gender": "female", "gender": "female"}'],
)  # fmt: skip
def test_an_object_that_repeats_a_key_is_refused_without_naming_it(data):
    with pytest.raises(DuplicateKey) as info:
        classify("fhir", data)
    assert "family" not in str(info.value) and "gender" not in str(info.value)


def test_a_native_envelope_that_repeats_a_key_is_refused_too():
    with pytest.raises(DuplicateKey):
        classify("native", b'{"schema_version": "v1", "schema_version": "v2"}')


@pytest.mark.parametrize(
    ("data", "pointer", "reason"),
    [(fhir(valueInteger=2**31), "/valueInteger", "maximum"),
     (fhir(valueInteger=-(2**31) - 1), "/valueInteger", "minimum"),
     (fhir(valueInteger=2**63), "/valueInteger", "maximum"),
     (fhir(valueInteger=1e12), "/valueInteger", "maximum"),
     (b'{"resourceType": "Observation", "status": "final", "code": {}, "valueInteger": 123456789012345678901234567890}',
      "/valueInteger", "maximum"),
     (fhir(extension=[{"url": "u", "valuePositiveInt": 9_999_999_999}]), "/extension/0/valuePositiveInt", "maximum"),
     (fhir(extension=[{"url": "u", "valueUnsignedInt": 4_294_967_295}]), "/extension/0/valueUnsignedInt", "maximum"),
     (orjson.dumps({"resourceType": "Bundle", "type": "collection", "total": 10_000_000_000}), "/total", "maximum"),
     (orjson.dumps({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {
         "resourceType": "Patient", "multipleBirthInteger": 3_000_000_000}}]}),
      "/entry/0/resource/multipleBirthInteger", "maximum")],
)  # fmt: skip
def test_an_integer_element_beyond_32_bits_is_422_at_its_pointer(data, pointer, reason):
    with pytest.raises(RecordInvalid) as info:
        classify("fhir", data)
    assert info.value.errors == [{"pointer": pointer, "reason": reason}]


@pytest.mark.parametrize(
    "data",
    [fhir(valueInteger=2**31 - 1), fhir(valueInteger=-(2**31)),
     fhir(valueQuantity={"value": 12_345_678_901, "unit": "cells"}),  # a decimal may be that large
     fhir(identifier=[{"value": "12345678901234"}])],  # so may digits in a string
)  # fmt: skip
def test_32_bit_integers_decimals_and_digit_strings_are_accepted(data):
    assert classify("fhir", data).record_type == "Observation"
