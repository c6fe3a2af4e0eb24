"""Normalizer: record.ingested.v1 → tokens → de-identified canonical model (issue: Normalizer)."""
