"""Query: read-only GraphQL over the canonical model (issue: Query service)."""
