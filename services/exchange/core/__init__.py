"""The services' shared core: settings, logging, errors, auth, HTTP app factory, metrics and the
connection helpers for Postgres, S3 and Kafka. Written once; every service imports it."""
