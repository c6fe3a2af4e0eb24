"""alembic environment: offline rendering only (see `exchange.core.migrations`)."""

from __future__ import annotations

from alembic import context

context.configure(
    dialect_name="postgresql",
    literal_binds=True,
    transactional_ddl=False,  # the caller wraps the whole script in one transaction
    version_table=context.config.attributes.get("version_table", "alembic_version"),
    output_buffer=context.config.output_buffer,
)
with context.begin_transaction():
    context.run_migrations()
