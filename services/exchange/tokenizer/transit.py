"""Transit tokens: per-recipient, unlinkable across recipients, transcodable back (ADR 0003).

A transit token is the platform token encrypted deterministically for one recipient:

    key_r   = HKDF-SHA256(master, info = "exchange/transit/v1/recipient/" + recipient)  (64 bytes)
    transit = base64url( AES-SIV(key_r).encrypt(raw platform token, AD = [rule id, recipient]) )

- Deterministic: the same person's token always maps to the same transit token for a recipient,
  so a recipient links records across its own deliveries.
- Unlinkable: recipients hold transit tokens under independent keys; without a key the
  tokens of two recipients cannot be related (AES-SIV is a deterministic authenticated cipher).
- Transcodable: the platform, holding the master key, decrypts a recipient's token back to its
  own; the associated data binds the token to its rule and recipient, so a token replayed under
  another rule or recipient fails authentication instead of decoding to garbage.

The blank token stays blank: a missing rule is not a secret, and an encrypted blank would
collide across people anyway.
"""

from __future__ import annotations

import base64
import binascii
import re

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from exchange.core.errors import ExchangeError
from exchange.tokenizer.rules import BLANK_TOKEN, RULE_IDS
from exchange.tokenizer.secrets import TokenizationSecret

_INFO = b"exchange/transit/v1"
_RECIPIENT = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_TOKEN_BYTES = 32  # HMAC-SHA256 output


class TransitError(ExchangeError):
    """A transit token that cannot be produced or read back (wrong recipient, rule or format)."""


def _hkdf(key: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(key)


class TransitCodec:
    """Encodes platform tokens for a recipient and decodes them back. Keys are cached per recipient."""

    def __init__(self, master_key: bytes) -> None:
        if len(master_key) < 32:
            raise ValueError("the transit master key needs at least 32 bytes")
        self._master = master_key
        self._ciphers: dict[str, AESSIV] = {}

    @classmethod
    def from_secret(cls, secret: TokenizationSecret) -> TransitCodec:
        """Derive the master key from the tokenization secret (domain-separated by HKDF info)."""
        return cls(_hkdf(secret.value, _INFO + b"/master", 32))

    def _cipher(self, recipient: str) -> AESSIV:
        cipher = self._ciphers.get(recipient)
        if cipher is None:
            if not _RECIPIENT.match(recipient):
                raise TransitError("recipient id must be 1-128 characters of A-Z a-z 0-9 . _ : -")
            cipher = AESSIV(_hkdf(self._master, _INFO + b"/recipient/" + recipient.encode(), 64))
            self._ciphers[recipient] = cipher
        return cipher

    @staticmethod
    def _associated(rule_id: str, recipient: str) -> list[bytes]:
        if rule_id not in RULE_IDS:
            raise TransitError("unknown rule id")
        return [rule_id.encode(), recipient.encode()]

    def encode(self, recipient: str, rule_id: str, token: str) -> str:
        """The recipient's transit token for a platform token (blank stays blank)."""
        if token == BLANK_TOKEN:
            return BLANK_TOKEN
        try:
            raw = base64.b64decode(token, validate=True)
        except binascii.Error:
            raise TransitError("not a platform token") from None
        if len(raw) != _TOKEN_BYTES:
            raise TransitError("not a platform token")
        sealed = self._cipher(recipient).encrypt(raw, self._associated(rule_id, recipient))
        return base64.urlsafe_b64encode(sealed).decode()

    def decode(self, recipient: str, rule_id: str, transit_token: str) -> str:
        """The platform token behind a recipient's transit token. Raises TransitError."""
        if transit_token == BLANK_TOKEN:
            return BLANK_TOKEN
        try:
            sealed = base64.urlsafe_b64decode(transit_token.encode())
        except (binascii.Error, ValueError):
            raise TransitError("not a transit token") from None
        try:
            raw = self._cipher(recipient).decrypt(sealed, self._associated(rule_id, recipient))
        except (InvalidTag, ValueError):
            raise TransitError("transit token does not belong to this recipient and rule") from None
        return base64.b64encode(raw).decode()
