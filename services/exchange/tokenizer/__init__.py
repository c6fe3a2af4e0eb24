"""The tokenizer: OpenToken-compatible deterministic PII tokens (T1-T5), transit tokens, a CSV
pipeline and the HTTP service. `engine.Tokenizer` is the library entry point."""
