"""The tokenization secret: loaded from a file (a Kubernetes Secret mount) or the environment.

The value never appears in `repr`, logs, errors or metadata. What travels instead:

- `key_id`: a short public label stamped on every batch of tokens, so a rotation is visible and
  tokens made under an old key stay identifiable. Explicit (`TOKENIZATION_KEY_ID`) or derived:
  the first 8 hex digits of SHA-256(secret).
- `fingerprint`: the full SHA-256 hex of the secret, as OpenToken's metadata carries it, so two
  parties can check they hold the same secret without revealing it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from exchange.core.errors import ConfigError
from exchange.core.settings import PLACEHOLDER_SECRETS

MIN_SECRET_BYTES = 16
"""Outside ENV=local a shorter secret is refused: tokens are only as strong as the key."""

_KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@dataclass(frozen=True)
class TokenizationSecret:
    """The HMAC key and its public labels. `repr` and `str` never show the value."""

    value: bytes = field(repr=False)
    key_id: str
    fingerprint: str

    def __str__(self) -> str:
        return f"TokenizationSecret(key_id={self.key_id})"

    @classmethod
    def from_bytes(cls, value: bytes, key_id: str | None = None) -> TokenizationSecret:
        """Wrap a secret, deriving the key id unless one is given. Raises ConfigError."""
        if not value:
            raise ConfigError("the tokenization secret is empty")
        fingerprint = hashlib.sha256(value).hexdigest()
        key_id = key_id or fingerprint[:8]
        if not _KEY_ID.match(key_id):
            raise ConfigError("TOKENIZATION_KEY_ID must be 1-64 characters of A-Z a-z 0-9 . _ -")
        return cls(value, key_id, fingerprint)


def load_secret(
    secret_file: Path | None,
    secret_value: str | None = None,
    key_id: str | None = None,
    *,
    strict: bool = True,
) -> TokenizationSecret:
    """Load the secret from `secret_file` (preferred) or `secret_value`.

    A file's trailing line break is dropped (`echo secret > file`); other bytes are kept.
    `strict` (every environment but local) refuses placeholders and secrets under 16 bytes.
    Raises ConfigError with a one-line message that never contains the secret.
    """
    if secret_file is not None:
        try:
            raw = secret_file.read_bytes()
        except FileNotFoundError:
            raise ConfigError(f"tokenization secret file not found: {secret_file}") from None
        except OSError as exc:
            raise ConfigError(f"tokenization secret file unreadable: {secret_file} ({type(exc).__name__})") from None
        value = raw.rstrip(b"\r\n")
    elif secret_value is not None:
        value = secret_value.encode()
    else:
        raise ConfigError("no tokenization secret: set TOKENIZATION_SECRET_FILE (or TOKENIZATION_SECRET)")
    if strict:
        if value.decode(errors="replace").strip().lower() in PLACEHOLDER_SECRETS:
            raise ConfigError("the tokenization secret is a placeholder; set a real one")
        if len(value) < MIN_SECRET_BYTES:
            raise ConfigError(f"the tokenization secret is shorter than {MIN_SECRET_BYTES} bytes")
    return TokenizationSecret.from_bytes(value, key_id)
