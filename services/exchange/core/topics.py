"""Names of the platform's Kafka topics (their payloads are the schemas in contracts/events/)."""

RECORD_INGESTED = "record.ingested.v1"
RECORD_INGESTED_DLQ = "record.ingested.v1.dlq"
RECORD_NORMALIZED = "record.normalized.v1"

ALL_TOPICS = (RECORD_INGESTED, RECORD_INGESTED_DLQ, RECORD_NORMALIZED)
