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

Between two deployments (ADR 0003, amendment 1): the sender exports `key_r` once as a
`TransitKey` file for the recipient, who decrypts with it (never with the sender's secret) and
re-keys the sender's token into its own site token with `SiteKey` (HMAC under a key derived from
its own tokenization secret), so the sender's token exists only in the recipient's memory.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass, field

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
_MAX_CACHED_RECIPIENTS = 1024
RECIPIENT_KEY_BYTES = 64  # AES-SIV with AES-256: two 256-bit keys


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

    def recipient_key(self, recipient: str) -> TransitKey:
        """The key a recipient needs to read its transit tokens (exported once, kept secret)."""
        check_recipient(recipient)
        return TransitKey(recipient, _hkdf(self._master, _INFO + b"/recipient/" + recipient.encode(), 64))

    def _cipher(self, recipient: str) -> AESSIV:
        cipher = self._ciphers.get(recipient)
        if cipher is None:
            if len(self._ciphers) >= _MAX_CACHED_RECIPIENTS:  # callers name recipients: keep memory bounded
                self._ciphers.clear()
            cipher = AESSIV(self.recipient_key(recipient).key)
            self._ciphers[recipient] = cipher
        return cipher

    def encode(self, recipient: str, rule_id: str, token: str) -> str:
        """The recipient's transit token for a platform token (blank stays blank)."""
        if token == BLANK_TOKEN:
            return BLANK_TOKEN
        raw = _platform_bytes(token)
        sealed = self._cipher(recipient).encrypt(raw, _associated(rule_id, recipient))
        return base64.urlsafe_b64encode(sealed).decode()

    def decode(self, recipient: str, rule_id: str, transit_token: str) -> str:
        """The platform token behind a recipient's transit token. Raises TransitError."""
        if transit_token == BLANK_TOKEN:
            return BLANK_TOKEN
        raw = _open(self._cipher(recipient), recipient, rule_id, transit_token)
        return base64.b64encode(raw).decode()


def check_recipient(recipient: str) -> str:
    """`recipient` when it is a valid recipient id. Raises TransitError."""
    if not _RECIPIENT.match(recipient):
        raise TransitError("recipient id must be 1-128 characters of A-Z a-z 0-9 . _ : -")
    return recipient


def _associated(rule_id: str, recipient: str) -> list[bytes]:
    if rule_id not in RULE_IDS:
        raise TransitError("unknown rule id")
    return [rule_id.encode(), recipient.encode()]


def _platform_bytes(token: str) -> bytes:
    try:
        raw = base64.b64decode(token, validate=True)
    except binascii.Error:
        raise TransitError("not a platform token") from None
    if len(raw) != _TOKEN_BYTES:
        raise TransitError("not a platform token")
    return raw


def _open(cipher: AESSIV, recipient: str, rule_id: str, transit_token: str) -> bytes:
    """The raw platform token sealed in `transit_token`. Raises TransitError."""
    try:
        sealed = base64.b64decode(transit_token, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise TransitError("not a transit token") from None
    try:
        return cipher.decrypt(sealed, _associated(rule_id, recipient))
    except (InvalidTag, ValueError):
        raise TransitError("transit token does not belong to this recipient and rule") from None


@dataclass(frozen=True)
class TransitKey:
    """One recipient's transit key from one sender. `repr` never shows the key.

    `key_id` (first 8 hex of SHA-256 of the key) is public: the sender stamps it on every batch and
    the recipient compares it, so a rotated or mismatched key is named instead of guessed.
    """

    recipient: str
    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        check_recipient(self.recipient)
        if len(self.key) != RECIPIENT_KEY_BYTES:
            raise TransitError(f"a transit key has {RECIPIENT_KEY_BYTES} bytes")

    @property
    def key_id(self) -> str:
        return hashlib.sha256(self.key).hexdigest()[:8]


class TransitReader:
    """The recipient's side: opens transit tokens sealed for it with one sender's `TransitKey`."""

    def __init__(self, key: TransitKey) -> None:
        self.key_id = key.key_id
        self._recipient = key.recipient
        self._cipher = AESSIV(key.key)

    def open(self, rule_id: str, transit_token: str) -> bytes | None:
        """The sender's raw platform token (None for the blank token). Raises TransitError."""
        if transit_token == BLANK_TOKEN:
            return None
        return _open(self._cipher, self._recipient, rule_id, transit_token)


class SiteKey:
    """Re-keys a sender's platform token into this deployment's own site token.

    `site = base64(HMAC-SHA256(HKDF(own secret, "exchange/site/v1"), rule id || raw token))`: the
    same person from the same sender (or from senders sharing a hashing secret) gets the same site
    token here, and site tokens of two recipients are unrelated.
    """

    def __init__(self, secret: TokenizationSecret) -> None:
        self.key_id = secret.key_id
        self._key = _hkdf(secret.value, b"exchange/site/v1", 32)

    def site_token(self, rule_id: str, raw_token: bytes | None) -> str:
        """The site token (blank stays blank)."""
        if raw_token is None:
            return BLANK_TOKEN
        mac = hmac.new(self._key, rule_id.encode() + b"\x00" + raw_token, hashlib.sha256).digest()
        return base64.b64encode(mac).decode()
