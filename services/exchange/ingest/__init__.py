"""The ingest service: contract-validated, idempotent, durable intake of healthcare records.

Public surface: `exchange.ingest.app.create_app`, `exchange.ingest.relay.run`,
`exchange.ingest.migrations.upgrade`.
"""
