"""The schema strawberry builds is the contract, character for character (minus its header)."""

from __future__ import annotations

from pathlib import Path

from exchange.query.app import build_schema
from exchange.query.settings import QuerySettings

CONTRACT = Path(__file__).resolve().parents[3] / "contracts" / "graphql" / "schema.graphql"


def contract_sdl() -> str:
    lines = CONTRACT.read_text().splitlines()
    return "\n".join(line for line in lines if not line.startswith("#")).strip()


def test_the_built_schema_is_the_contract() -> None:
    settings = QuerySettings(ENV="test", DATABASE_URL="postgresql://q@127.0.0.1/q", JWT_ISSUER="i",
                             JWT_AUDIENCE="a", JWKS_URL="http://127.0.0.1/jwks.json")  # fmt: skip
    assert build_schema(settings).as_str().strip() == contract_sdl(), "regenerate or revise contracts/graphql"


async def test_field_suggestions_are_given_only_when_local() -> None:
    """Outside ENV=local an error never names a field the caller did not ask for: the schema is
    not introspectable there, and suggestions would leak it one guess at a time."""
    common = {"DATABASE_URL": "postgresql://q@127.0.0.1/q", "JWT_ISSUER": "i", "JWT_AUDIENCE": "a",
              "JWKS_URL": "http://127.0.0.1/jwks.json"}  # fmt: skip
    for env, suggested in (("production", False), ("staging", False), ("local", True)):
        result = await build_schema(QuerySettings(ENV=env, **common)).execute("{ patientz }")
        assert result.errors is not None
        (error,) = result.errors
        assert error.message.startswith("Cannot query field 'patientz' on type 'Query'.")
        assert ("Did you mean" in error.message) is suggested, env
