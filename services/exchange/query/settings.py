"""Settings of the query service (environment variables, 12-factor)."""

from __future__ import annotations

from pydantic import Field

from exchange.core.settings import AuthSettings, DatabaseSettings, ServiceSettings

SCOPE = "query:read"
"""The scope every GraphQL request needs."""


class QuerySettings(ServiceSettings, DatabaseSettings, AuthSettings):
    """Everything `exchange serve query` reads. DATABASE_URL should be the read-only role's DSN."""

    port: int = Field(8081, alias="PORT", description="Port the HTTP server binds to.")
    query_db_role: str | None = Field(
        None,
        alias="QUERY_DB_ROLE",
        description="Role each pooled connection switches to (SET ROLE) when DATABASE_URL is a broader "
        "login, as in `make dev`; unset when DATABASE_URL already is the read-only role.",
    )
    query_linker_role: str = Field(
        "linker", alias="QUERY_LINKER_ROLE", description="JWT role allowed to link subjects across tenants."
    )
    query_max_depth: int = Field(12, alias="QUERY_MAX_DEPTH", ge=1, description="Deepest selection nesting.")
    query_max_cost: int = Field(
        50_000,
        alias="QUERY_MAX_COST",
        ge=1,
        description="Most objects a query may ask for (each list multiplies its children by its page size).",
    )
    query_max_page_size: int = Field(
        100, alias="QUERY_MAX_PAGE_SIZE", ge=1, description="Largest `first` of a connection."
    )
    query_default_page_size: int = Field(
        20, alias="QUERY_DEFAULT_PAGE_SIZE", ge=1, description="`first` when a connection is asked without it."
    )
    query_max_length: int = Field(
        8_192, alias="QUERY_MAX_LENGTH", ge=1, description="Longest query document in characters."
    )
    query_max_body_bytes: int = Field(
        65_536, alias="QUERY_MAX_BODY_BYTES", ge=1, description="Largest request body (query + variables)."
    )
    query_max_aliases: int = Field(30, alias="QUERY_MAX_ALIASES", ge=1, description="Most aliases per document.")
    query_max_buckets: int = Field(
        1_000, alias="QUERY_MAX_BUCKETS", ge=1, description="Most time buckets a counts query may span."
    )

    @property
    def introspection(self) -> bool:
        """Schema introspection (and the GraphiQL IDE) only when ENV=local."""
        return self.is_local
