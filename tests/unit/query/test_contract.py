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
