"""Transit tokens: deterministic per recipient, unlinkable across recipients, transcodable back."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange.tokenizer.engine import PersonAttributes, Tokenizer
from exchange.tokenizer.rules import BLANK_TOKEN, RULE_IDS
from exchange.tokenizer.secrets import TokenizationSecret
from exchange.tokenizer.transit import SiteKey, TransitCodec, TransitError, TransitKey, TransitReader

SECRET = TokenizationSecret.from_bytes(b"platform-secret-for-transit-tests")
TOKENIZER = Tokenizer(SECRET.value)
CODEC = TransitCodec.from_secret(SECRET)
PEOPLE = [
    PersonAttributes("Alice", "Liddell", "1952-05-04", "F", "02139", "234-56-7890"),
    PersonAttributes("Bob", "Builder", "1970-01-01", "M", "98004", "345-67-8901"),
]


def tokens(person):
    return TOKENIZER.tokenize(person).tokens


@given(st.binary(min_size=32, max_size=32).map(lambda b: __import__("base64").b64encode(b).decode()))
def test_round_trip(token):
    for rule in RULE_IDS:
        assert CODEC.decode("partner-a", rule, CODEC.encode("partner-a", rule, token)) == token


def test_deterministic_for_one_recipient_so_it_links_its_own_deliveries():
    first = [CODEC.encode("partner-a", r, t) for r, t in zip(RULE_IDS, tokens(PEOPLE[0]), strict=True)]
    again = [
        TransitCodec.from_secret(SECRET).encode("partner-a", r, t)
        for r, t in zip(RULE_IDS, tokens(PEOPLE[0]), strict=True)
    ]
    assert first == again


def test_unlinkable_across_recipients():
    for person in PEOPLE:
        for rule, token in zip(RULE_IDS, tokens(person), strict=True):
            a, b = CODEC.encode("partner-a", rule, token), CODEC.encode("partner-b", rule, token)
            assert a != b != token
    every_a = {CODEC.encode("partner-a", r, t) for p in PEOPLE for r, t in zip(RULE_IDS, tokens(p), strict=True)}
    every_b = {CODEC.encode("partner-b", r, t) for p in PEOPLE for r, t in zip(RULE_IDS, tokens(p), strict=True)}
    assert every_a.isdisjoint(every_b)


def test_different_people_stay_different_for_a_recipient():
    a = [CODEC.encode("partner-a", "T1", tokens(p)[0]) for p in PEOPLE]
    assert len(set(a)) == len(PEOPLE)


def test_a_token_only_decodes_for_its_recipient_and_rule():
    transit = CODEC.encode("partner-a", "T1", tokens(PEOPLE[0])[0])
    with pytest.raises(TransitError):
        CODEC.decode("partner-b", "T1", transit)
    with pytest.raises(TransitError):
        CODEC.decode("partner-a", "T2", transit)
    with pytest.raises(TransitError):
        TransitCodec.from_secret(TokenizationSecret.from_bytes(b"another-platform-secret-value")).decode(
            "partner-a", "T1", transit
        )


def test_blank_stays_blank():
    assert CODEC.encode("partner-a", "T4", BLANK_TOKEN) == BLANK_TOKEN
    assert CODEC.decode("partner-a", "T4", BLANK_TOKEN) == BLANK_TOKEN


@pytest.mark.parametrize("bad", ["", "not base64!", "QUJD", "A" * 64])
def test_malformed_inputs_are_transit_errors(bad):
    with pytest.raises(TransitError):
        CODEC.encode("partner-a", "T1", bad)
    with pytest.raises(TransitError):
        CODEC.decode("partner-a", "T1", bad or "x")


def test_recipient_and_rule_ids_are_checked():
    token = tokens(PEOPLE[0])[0]
    with pytest.raises(TransitError, match="recipient"):
        CODEC.encode("no spaces please", "T1", token)
    with pytest.raises(TransitError, match="rule"):
        CODEC.encode("partner-a", "T9", token)


def test_the_master_key_is_not_the_tokenization_secret():
    with pytest.raises(ValueError):
        TransitCodec(b"too short")


def test_a_recipient_reads_its_tokens_with_the_exported_key_alone():
    reader = TransitReader(CODEC.recipient_key("partner-a"))
    for rule, token in zip(RULE_IDS, tokens(PEOPLE[0]), strict=True):
        raw = reader.open(rule, CODEC.encode("partner-a", rule, token))
        assert raw is not None and base64.b64encode(raw).decode() == token
    assert reader.open("T1", BLANK_TOKEN) is None


def test_another_recipients_key_does_not_open_the_token():
    transit = CODEC.encode("partner-a", "T1", tokens(PEOPLE[0])[0])
    with pytest.raises(TransitError, match="does not belong"):
        TransitReader(CODEC.recipient_key("partner-b")).open("T1", transit)
    # A key exported for the right name by another platform does not open it either.
    other = TransitCodec.from_secret(TokenizationSecret.from_bytes(b"another-platform-secret-value"))
    with pytest.raises(TransitError):
        TransitReader(other.recipient_key("partner-a")).open("T1", transit)


def test_the_key_id_is_public_and_stable_and_repr_hides_the_key():
    key = CODEC.recipient_key("partner-a")
    assert key.key_id == CODEC.recipient_key("partner-a").key_id != CODEC.recipient_key("partner-b").key_id
    assert len(key.key_id) == 8 and key.key not in repr(key).encode()
    assert key.key.hex() not in repr(key)
    with pytest.raises(TransitError):
        TransitKey("partner-a", b"short")


def test_site_tokens_are_keyed_by_the_recipients_own_secret_per_rule():
    raw = base64.b64decode(tokens(PEOPLE[0])[0])
    mine = SiteKey(TokenizationSecret.from_bytes(b"recipient-b-secret-0123456789"))
    theirs = SiteKey(TokenizationSecret.from_bytes(b"recipient-c-secret-0123456789"))
    site = mine.site_token("T1", raw)
    assert site == mine.site_token("T1", raw)
    assert len(base64.b64decode(site)) == 32
    assert site not in {theirs.site_token("T1", raw), mine.site_token("T2", raw), tokens(PEOPLE[0])[0]}
    assert mine.site_token("T1", None) == BLANK_TOKEN


def test_the_cipher_cache_stays_bounded_when_callers_name_many_recipients():
    codec = TransitCodec.from_secret(SECRET)
    token = tokens(PEOPLE[0])[0]
    first = codec.encode("r-0", "T1", token)
    for i in range(1, 1500):
        codec.encode(f"r-{i}", "T1", token)
    assert len(codec._ciphers) <= 1024
    assert codec.encode("r-0", "T1", token) == first
