"""The fast paths (plain ASCII names, fixed-width dates, usual SSN and ZIP-5 shapes, and their
inlined copies in the engine loop) against the oracle, on inputs built to sit on either side of
each fast path's entry test: ASCII vs non-ASCII, digits vs separators, valid vs invalid fields."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openlinktoken.attributes.person.first_name_attribute import FirstNameAttribute
from openlinktoken.attributes.person.last_name_attribute import LastNameAttribute
from tok_oracle import Oracle

from exchange.tokenizer import attributes as a
from exchange.tokenizer.engine import PersonAttributes, Tokenizer

ORACLE = Oracle("HashingKey", java_ssn=True)
EXAMPLES = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ASCII_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
# One character off the fast path each: a diacritic, a non-ASCII digit or letter, whitespace, punctuation.
OFF_PATH = ["é", "\u0301", "ß", "Ł", "\u0663", "\uff12", " ", "\t", ".", "-", "'", "I", "V"]


def _oracle_name(attribute: object, raw: str) -> str | None:
    if not attribute.validate(raw):  # type: ignore[attr-defined]
        return None
    return str(attribute.normalize(raw).strip().upper())  # type: ignore[attr-defined]


plain_names = st.text(ASCII_ALNUM, min_size=1, max_size=12) | st.sampled_from(
    ["Unknown", "TEST", "Test16", "Ng", "ng7", "Xu", "Bc", "7", "123", "James594", "Al", "Missing2"]
)
# A plain name with one off-path character inserted anywhere: must take the general path.
near_plain_names = st.tuples(plain_names, st.integers(0, 12), st.sampled_from(OFF_PATH)).map(
    lambda t: t[0][: t[1]] + t[2] + t[0][t[1] :]
)


@EXAMPLES
@given(plain_names | near_plain_names)
def test_plain_and_nearly_plain_names_match_the_oracle(raw):
    first = a.first_name_component(raw)
    assert (first.full if first else None) == _oracle_name(FirstNameAttribute(), raw)
    assert a.last_name_component(raw) == _oracle_name(LastNameAttribute(), raw)


def _fixed_width_dates() -> st.SearchStrategy[str]:
    year, field = st.integers(0, 9999), st.integers(0, 39)
    iso = st.builds(
        lambda y, m, d, s1, s2: f"{y:04d}{s1}{m:02d}{s2}{d:02d}",
        year,
        field,
        field,
        st.sampled_from("-/."),
        st.sampled_from("-/."),
    )
    mdy = st.builds(
        lambda y, m, d, s1, s2: f"{m:02d}{s1}{d:02d}{s2}{y:04d}",
        year,
        field,
        field,
        st.sampled_from("-/."),
        st.sampled_from("-/."),
    )
    # Ten characters from digits and separators (and a few off-path ones) in any arrangement.
    noise = st.text(st.sampled_from("0123456789" * 3 + "-/.T \u0663"), min_size=10, max_size=10)
    return iso | mdy | noise


@EXAMPLES
@given(_fixed_width_dates())
def test_fixed_width_dates_match_the_oracle(raw):
    person = PersonAttributes("John", "Smith", raw, "M", "98004", "234-56-7890")
    ours = Tokenizer(b"k").tokenize(person)
    expected = ORACLE.signatures(person).get("T3", "").rpartition("|")[2]
    assert (ours.validity[2] == "valid") == bool(expected)
    assert ORACLE.tokens(person) == Tokenizer(b"HashingKey").tokenize(person).tokens


# Nine digits with dashes anywhere (the fast path's shape), edge areas/groups/serials, off-path noise.
_ssn_digits = st.builds(
    lambda area, group, serial: f"{area:03d}{group:02d}{serial:04d}",
    st.sampled_from([0, 1, 123, 665, 666, 667, 899, 900, 999]) | st.integers(0, 999),
    st.sampled_from([0, 1, 45, 99]) | st.integers(0, 99),
    st.sampled_from([0, 1, 6789, 9999]) | st.integers(0, 9999),
)
_dashes = st.lists(st.integers(0, 9), max_size=3)
usual_ssns = st.tuples(_ssn_digits, _dashes).map(lambda t: "".join(c + "-" * t[1].count(i) for i, c in enumerate(t[0])))
odd_ssns = st.text(st.sampled_from("0123456789" * 3 + "- .\u0663"), min_size=7, max_size=13)


@EXAMPLES
@given(usual_ssns | odd_ssns | st.sampled_from(["111-11-1111", "123456789", "001-01-0001", "899-99-9999"]))
def test_ssns_through_the_inlined_loop_path_match_the_oracle(raw):
    person = PersonAttributes("John", "Smith", "1980-01-01", "F", "02139", raw)
    assert Tokenizer(b"HashingKey").tokenize(person).tokens == ORACLE.tokens(person)
    ours = a.ssn_component(raw)
    assert (f"{ours}|FEMALE|1980-01-01" if ours else None) == ORACLE.signatures(person).get("T4")


@EXAMPLES
@given(
    st.text(st.sampled_from("0123456789" * 4 + " -\u0663A"), min_size=3, max_size=10)
    | st.sampled_from(a.US_REFUSED_PREFIXES)
)
def test_postal_codes_through_the_inlined_zip5_path_match_the_oracle(raw):
    person = PersonAttributes("John", "Smith", "1980-01-01", "F", raw[:5], "234-56-7890")
    assert Tokenizer(b"HashingKey").tokenize(person).tokens == ORACLE.tokens(person)


def test_fast_and_general_paths_agree_on_the_same_tokenizer():
    # One stream mixing fast-path and general-path spellings of the same people: the memo keys
    # differ (raw text), the tokens must not.
    tok = Tokenizer(b"HashingKey")
    same = [
        PersonAttributes("James594", "Smith12", "1980-01-02", "M", "02139", "234-56-7890"),
        PersonAttributes(" James ", "Smith ", "01/02/1980", "male", " 02139 ", " 234567890"),
        PersonAttributes("Jámes", "Smíth", "1980/01/02", "Male", "021391234", "234 56 7890"),
    ]
    results = [r.tokens for r in tok.tokenize_many(same)]
    assert results[0] == results[1] == results[2] == ORACLE.tokens(same[0])
