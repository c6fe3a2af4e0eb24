"""The engine's own guarantees: HMAC correctness, blank tokens, flags, bounded memo, dates."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange.tokenizer.engine import HmacSha256, PersonAttributes, Tokenizer, Validity
from exchange.tokenizer.rules import BLANK_TOKEN, RULES

ALICE = PersonAttributes("Alice", "Liddell", "1952-05-04", "F", "02139", "234-56-7890")


@given(st.binary(min_size=1, max_size=200), st.binary(max_size=300))
def test_precomputed_hmac_equals_the_standard_library(key, message):
    assert HmacSha256(key).digest(message) == hmac.new(key, message, hashlib.sha256).digest()


def test_a_token_is_base64_hmac_of_the_hex_sha256_of_the_signature():
    expected = base64.b64encode(
        hmac.new(
            b"HashingKey", hashlib.sha256(b"DOE|JOHN|MALE|2000-01-01").hexdigest().encode(), hashlib.sha256
        ).digest()
    ).decode()
    tok = Tokenizer(b"HashingKey")
    assert tok.token("DOE|JOHN|MALE|2000-01-01") == expected
    result = tok.tokenize(PersonAttributes("John", "Doe", "2000-01-01", "Male", "980", None))
    assert result.tokens_by_rule()["T3"] == expected


def test_blank_signature_gives_the_blank_token():
    tok = Tokenizer(b"k")
    assert tok.token(None) == tok.token("  ") == BLANK_TOKEN == "0" * 64


def test_validity_flags_distinguish_valid_invalid_and_missing():
    result = Tokenizer(b"k").tokenize(PersonAttributes("Alice", "Test", "2099-01-01", None, "  ", "666-12-3456"))
    assert result.validity_by_attribute() == {
        "FirstName": Validity.VALID,
        "LastName": Validity.INVALID,  # placeholder
        "BirthDate": Validity.INVALID,  # in the future
        "Sex": Validity.MISSING,
        "PostalCode": Validity.MISSING,  # blank
        "SocialSecurityNumber": Validity.INVALID,  # area 666
    }
    assert result.tokens == (BLANK_TOKEN,) * 5


def test_rules_use_their_components():
    tok = Tokenizer(b"k")
    assert tok.tokenize(ALICE._replace(ssn=None)).tokens[3] == BLANK_TOKEN  # only T4 needs the SSN
    only_t5 = tok.tokenize(ALICE._replace(birth_date=None)).tokens
    assert [t != BLANK_TOKEN for t in only_t5] == [False, False, False, False, True]
    assert [r.rule_id for r in RULES if len(r.components) == 3] == ["T4", "T5"]


def test_different_secrets_give_different_tokens():
    assert set(Tokenizer(b"one").tokenize(ALICE).tokens).isdisjoint(Tokenizer(b"two").tokenize(ALICE).tokens)


def test_the_birth_date_upper_bound_is_today_at_call_time():
    tok = Tokenizer(b"k")
    person = ALICE._replace(birth_date="2030-06-01")
    assert tok.tokenize(person, today=date(2030, 5, 31)).validity[2] == Validity.INVALID
    assert tok.tokenize(person, today=date(2030, 6, 1)).validity[2] == Validity.VALID  # memo does not pin it


def test_memo_tables_stay_bounded():
    tok = Tokenizer(b"k", memo_size=64)
    people = [ALICE._replace(first_name=f"Name{i}", postal_code=f"{i:05d}") for i in range(5000)]
    for _ in tok.tokenize_many(people):
        pass
    assert all(len(memo) <= 64 + 1024 for memo in tok._memos)
    assert len(tok._token_memo) <= 64 + 1024


def test_empty_secret_is_refused():
    with pytest.raises(ValueError, match="empty"):
        Tokenizer(b"")
