"""The tokenizer client against the real tokenizer app (in process, ASGI): batches, order, errors."""

from __future__ import annotations

import httpx
import pytest

from exchange.core.errors import DependencyError, PoisonError
from exchange.normalizer.model import Person
from exchange.normalizer.tokenizer_client import TokenizerClient

ADA = Person("Ada", "Lovelace", "1990-12-10", "female", "02139", "123-45-6789")


@pytest.fixture(scope="module")
def tokenizer_app():
    from exchange.tokenizer.app import create_app
    from exchange.tokenizer.settings import TokenizerSettings

    return create_app(TokenizerSettings(ENV="local", TOKENIZATION_SECRET="unit-secret-0123456789abcdef"))


def client(app, batch_size=500, bearer="dev"):
    return TokenizerClient("http://tokenizer", bearer, batch_size=batch_size, transport=httpx.ASGITransport(app=app))


async def test_tokens_come_back_in_order_across_batches_and_are_deterministic(tokenizer_app):
    people = [ADA, Person(), ADA, Person("Alan", "Turing", "1912-06-23", "male", None, None)] * 3
    tok = client(tokenizer_app, batch_size=5)
    try:
        sets = await tok.tokenize(people)
    finally:
        await tok.aclose()
    assert len(sets) == len(people)
    assert sets[0] == sets[2] == sets[4 + 0]
    assert sets[1].blank and not sets[0].blank
    assert sets[0].tokens != sets[3].tokens
    assert all(len(t) in (44, 64) for s in sets for t in s.tokens)


async def test_bad_credentials_are_transient_and_an_unreachable_tokenizer_too(tokenizer_app):
    tok = client(tokenizer_app, bearer="not-a-jwt")
    try:
        with pytest.raises(DependencyError):
            await tok.tokenize([ADA])
    finally:
        await tok.aclose()
    gone = TokenizerClient("http://127.0.0.1:9", "dev", timeout=0.5)
    try:
        with pytest.raises(DependencyError) as caught:
            await gone.tokenize([ADA])
        assert "Lovelace" not in str(caught.value)
    finally:
        await gone.aclose()


async def test_a_request_the_tokenizer_refuses_is_poison(tokenizer_app):
    tok = client(tokenizer_app, batch_size=5000)
    try:
        with pytest.raises(PoisonError) as caught:
            await tok.tokenize([ADA] * 1001)  # over the tokenizer's batch limit → 413
        assert caught.value.error_class == "tokenizer-rejected" and "Lovelace" not in str(caught.value)
    finally:
        await tok.aclose()


async def test_the_token_file_is_read_again_once_it_changes_so_a_rotation_needs_no_restart(tokenizer_app, tmp_path):
    from exchange.normalizer.settings import NormalizerSettings

    token_file = tmp_path / "token"
    settings = NormalizerSettings(
        ENV="production", DATABASE_URL="postgresql://u:pw-0123456789@h/d", S3_ACCESS_KEY_ID="ak",
        S3_SECRET_ACCESS_KEY="sk-0123456789", KAFKA_BOOTSTRAP_SERVERS="k:9092", NORMALIZER_ID_KEY="id-key-0123456789",
        TOKENIZER_TOKEN_FILE=str(token_file),
    )  # fmt: skip
    tok = client(tokenizer_app, bearer=settings.tokenizer_credentials())
    try:
        with pytest.raises(DependencyError):  # no file yet: transient, not a crash
            await tok.tokenize([ADA])
        token_file.write_text("not-a-valid-jwt\n")
        with pytest.raises(DependencyError):  # refused by the tokenizer: transient
            await tok.tokenize([ADA])
        token_file.write_text("dev\n")  # rotated in place: the next call sends the new token
        assert len(await tok.tokenize([ADA])) == 1
    finally:
        await tok.aclose()


def test_outside_local_the_id_key_and_a_tokenizer_credential_are_required():
    from exchange.core.errors import ConfigError
    from exchange.core.settings import load
    from exchange.normalizer.settings import NormalizerSettings

    base = {"ENV": "production", "DATABASE_URL": "postgresql://u:pw-0123456789@h/d", "S3_ACCESS_KEY_ID": "ak",
            "S3_SECRET_ACCESS_KEY": "sk-0123456789", "KAFKA_BOOTSTRAP_SERVERS": "k:9092"}  # fmt: skip
    with pytest.raises(ConfigError, match="NORMALIZER_ID_KEY"):
        load(NormalizerSettings, **base, TOKENIZER_TOKEN="t-0123456789")
    with pytest.raises(ConfigError, match="TOKENIZER_TOKEN"):
        load(NormalizerSettings, **base, NORMALIZER_ID_KEY="id-key-0123456789")
    with pytest.raises(ConfigError, match="placeholder"):
        load(NormalizerSettings, **base, NORMALIZER_ID_KEY="changeme", TOKENIZER_TOKEN="t-0123456789")
