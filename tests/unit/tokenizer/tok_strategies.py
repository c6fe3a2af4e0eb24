"""Hypothesis strategies for identity attributes: realistic shapes plus the odd cases that break
normalizers (accents, hyphens, apostrophes, titles, suffixes, Synthea digits, odd dates and codes)."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import strategies as st

from exchange.tokenizer.engine import PersonAttributes

# fmt: off
FIRST = ["John", "Mary", "José", "Zoë", "Łukasz", "Søren", "Renée", "Ángel", "Ng", "Al", "Jo", "Ed", "Mary Ann",
         "Jean-Paul", "Anne.Marie", "O'Neil", "Ævar", "Þór", "Œdipe", "İlkay", "Ǆemal", "Li", "Bo", "Sue Ellen"]
LAST = ["Smith", "O'Brien", "García-López", "Müller", "Ng", "Li", "Xu", "Yi", "Ox", "Ao", "Dvořák", "Straße",
        "Øster-Gaard", "van der Berg", "Mc Donald", "Łęcki", "Þorsteinsdóttir", "Đorđević", "Ó Súilleabháin"]
TITLES = ["", "", "", "Dr. ", "Mr ", "mrs. ", "Sister ", "Rev ", "Prof. Dr. ", "Capt ", "Doctor ", "Mister "]
SUFFIXES = ["", "", "", " Jr", " Jr.", " Sr", " III", " IV", " ii", " 2nd", " 3rd", " Junior", " X", " VIII"]
PLACEHOLDERS = ["Unknown", "N/A", "test", "PATIENT", "<masked>", "Not Available", "zzztrash", "Test16", "Donor"]
SEXES = ["M", "F", "m", "f", "Male", "female", "MALE", " Female ", "Mal", "U", "Unknown", "X", "", "fem"]
DATE_FORMATS = ["%Y-%m-%d", "%Y/%m/%d", "%m/%d/%Y", "%m-%d-%Y", "%d.%m.%Y", "%Y-%m-%dT%H:%M:%SZ",
                "%Y-%m-%dT%H:%M:%S.000Z", "%Y-%m-%dT%H:%M:%S+05:30", "%Y.%m.%d", "%d/%m/%Y", "%Y%m%d"]
ODD_DATES = ["2024-02-30", "1909-12-31", "1910-01-01", "13/01/1980", "1980-01/02", "1980-1-2", "  1980-01-02 ",
             "1980-01-02\n", "0000-01-01", "9999-12-31", "1980-01-02T25:00:00Z", "1980-01-02T10:00:00",
             "1980-01-02T10:00:00.12Z", "\u0662\u0660\u0660\u0660-\u0660\u0661-\u0660\u0661", "2000-01-01 ",
             "31.12.1999", "02.29.2000"]
ODD_POSTALS = ["980", "0980", "02139-1234", "021391234", "12345", "123456789", "11111", "00501", "555", "88812",
               "K1A 0A6", "k1a0a6", "K1A", "K1A1", "K1A1A", "H0H 0H0", "M7A 1A0", "m5v3l9", "T2X 1V4", " J1X ",
               "A1A 1A1", "K1B", "K1A 1B0", "1234", "12", "ABCDE", "9 8 0", "\u0669\u0668\u0660\u0661\u0662"]
ODD_SSNS = ["123-45-6789", "000-12-3456", "666-12-3456", "900-12-3456", "123-00-4567", "123-45-0000",
            "1234567", "12345678", "123456789", "1234567890", "123 45 6789", " 234-56-7890 ", "234567891.00",
            "23456789.5", "234-56-78901", "111-11-1111", "001-01-0001", "abc-de-fghi", "234-5678-91",
            "\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669\u0661"]
# fmt: on


def _with_accents(name: str) -> st.SearchStrategy[str]:
    combining = st.sampled_from(["\u0301", "\u0308", "\u0327", "\u030c", "\u0323"])
    return st.tuples(st.integers(0, len(name)), combining).map(lambda t: name[: t[0]] + t[1] + name[t[0] :])


def names(pool: list[str]) -> st.SearchStrategy[str]:
    base = st.sampled_from(pool)
    synthea = st.tuples(base, st.integers(0, 999)).map(lambda t: f"{t[0]}{t[1]}")
    decorated = st.tuples(
        st.sampled_from(TITLES), base, st.sampled_from(["", " A", " B.", " j"]), st.sampled_from(SUFFIXES)
    ).map("".join)
    accented = base.flatmap(_with_accents)
    case = base.map(str.upper) | base.map(str.lower)
    return st.one_of(
        base,
        synthea,
        decorated,
        accented,
        case,
        st.sampled_from(PLACEHOLDERS),
        st.text(max_size=12),
        st.text(alphabet="ab -'.IVXJr", max_size=10),
    )


def dates() -> st.SearchStrategy[str]:
    day = st.dates(min_value=date(1890, 1, 1), max_value=date.today() + timedelta(days=400))
    formatted = st.tuples(day, st.sampled_from(DATE_FORMATS)).map(lambda t: t[0].strftime(t[1]))
    return st.one_of(
        formatted, formatted, st.sampled_from(ODD_DATES), st.text(alphabet="0123456789-/.T:Z ", max_size=12)
    )


def postals() -> st.SearchStrategy[str]:
    us = st.integers(0, 99999).map(lambda n: f"{n:05d}")
    us_cut = st.tuples(us, st.integers(3, 5)).map(lambda t: t[0][: t[1]])
    plus4 = st.tuples(us, st.integers(0, 9999), st.sampled_from(["-", ""])).map(lambda t: f"{t[0]}{t[2]}{t[1]:04d}")
    letters, digits = st.sampled_from("ABCEGHJKLMNPRSTVXYZabcegk"), st.sampled_from("0123456789")
    ca = st.tuples(
        letters, digits, letters, st.sampled_from(["", " ", "  "]), digits, letters, digits, st.integers(3, 6)
    ).map(lambda t: ("".join(t[:3]) + t[3] + "".join(t[4:7]))[: t[7] + len(t[3])])
    return st.one_of(us, us_cut, plus4, ca, st.sampled_from(ODD_POSTALS), st.text(max_size=8))


def ssns() -> st.SearchStrategy[str]:
    dashed = st.tuples(
        st.integers(0, 999), st.integers(0, 99), st.integers(0, 9999), st.sampled_from(["-", "", " "])
    ).map(lambda t: f"{t[0]:03d}{t[3]}{t[1]:02d}{t[3]}{t[2]:04d}")
    short = st.integers(0, 99_999_999).map(str)
    return st.one_of(dashed, short, st.sampled_from(ODD_SSNS), st.text(alphabet="0123456789-. ", max_size=13))


def optional(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[str | None]:
    return st.one_of(st.none(), st.just(""), st.just("   "), strategy, strategy, strategy)


def people() -> st.SearchStrategy[PersonAttributes]:
    return st.builds(
        PersonAttributes,
        first_name=optional(names(FIRST)),
        last_name=optional(names(LAST)),
        birth_date=optional(dates()),
        sex=optional(st.sampled_from(SEXES) | st.text(max_size=4)),
        postal_code=optional(postals()),
        ssn=optional(ssns()),
    )
