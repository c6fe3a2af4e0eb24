"""What ingest accepts, the normalizer and the tokenizer accept too: a partner told "accepted" for
a record the tokenizer then refuses would see it dead-lettered, never canonical.

A bulk line gets the single-record limit. The normalizer sends the tokenizer batches of people;
when the tokenizer refuses a batch (413), it sends each record's people alone, in calls of at most
TOKENIZER_BATCH people. Such a call carries at most one record's attribute values (each is a
string of the record, re-encoded no longer than it came) plus the JSON around each person."""

from __future__ import annotations

from typing import Any

import orjson

from exchange.ingest.settings import IngestSettings
from exchange.normalizer.model import Person
from exchange.normalizer.settings import NormalizerSettings
from exchange.tokenizer.settings import TokenizerSettings


def default(settings: type[Any], name: str) -> int:
    value: int = settings.model_fields[name].default
    return value


def test_the_people_of_a_record_ingest_accepts_fit_in_tokenizer_calls_of_the_normalizer_batch():
    record = default(IngestSettings, "ingest_max_body_bytes")
    people_per_call = default(NormalizerSettings, "tokenizer_batch")
    around_a_person = len(orjson.dumps(Person().as_request(str(people_per_call)))) + 1  # and a comma
    assert people_per_call <= default(TokenizerSettings, "tokenizer_max_batch")
    assert record + people_per_call * around_a_person + 64 <= default(TokenizerSettings, "tokenizer_max_body_bytes")
