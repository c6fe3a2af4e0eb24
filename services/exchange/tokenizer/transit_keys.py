"""Transit key files: how a sender hands a recipient its key, and how the recipient loads them.

A key file is one small JSON document, written by `exchange tokenize transit key` at the sender
and mounted at the recipient (a Kubernetes Secret, one key per sender):

    {"format": "exchange-transit-key/v1", "recipient": "<recipient id>", "key": "<base64url, 64 bytes>"}

The recipient's tokenizer reads every file of `TRANSIT_KEYS_DIR` at start; a file's name is the
sender's id. Errors name the file and what is wrong with it, never key bytes.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from pathlib import Path

import orjson

from exchange.core.errors import ConfigError
from exchange.tokenizer.transit import TransitError, TransitKey

FORMAT = "exchange-transit-key/v1"
SENDER_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
"""A sender id is a file name and a Kubernetes Secret key: no ':' unlike recipient ids."""


def dump_key(key: TransitKey) -> bytes:
    """The key file's bytes."""
    document = {"format": FORMAT, "recipient": key.recipient, "key": base64.urlsafe_b64encode(key.key).decode()}
    return orjson.dumps(document) + b"\n"


def parse_key(data: bytes, source: str) -> TransitKey:
    """The TransitKey in a key file's bytes. Raises ConfigError naming `source` only."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ConfigError(f"transit key file {source} is not JSON") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ConfigError(f"transit key file {source} is not an {FORMAT} document")
    recipient, encoded = document.get("recipient"), document.get("key")
    if not isinstance(recipient, str) or not isinstance(encoded, str):
        raise ConfigError(f"transit key file {source} needs string fields recipient and key")
    try:
        return TransitKey(recipient, base64.b64decode(encoded, altchars=b"-_", validate=True))
    except (binascii.Error, ValueError):
        raise ConfigError(f"transit key file {source}: key is not base64url") from None
    except TransitError as exc:
        raise ConfigError(f"transit key file {source}: {exc}") from None


def load_key_file(path: Path) -> TransitKey:
    """Read one key file. Raises ConfigError."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"transit key file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"transit key file unreadable: {path} ({type(exc).__name__})") from None
    return parse_key(data, str(path))


def load_keys_dir(directory: Path) -> dict[str, TransitKey]:
    """Sender id -> TransitKey for every file in `directory`. Raises ConfigError.

    Names starting with '.' are skipped: a Secret volume keeps its versions in `..data` and
    `..<timestamp>` entries next to the key files, which are symlinks into them.
    """
    if not directory.is_dir():
        raise ConfigError(f"TRANSIT_KEYS_DIR is not a directory: {directory}")
    keys: dict[str, TransitKey] = {}
    for name in sorted(os.listdir(directory)):
        path = directory / name
        if name.startswith(".") or not path.is_file():
            continue
        if not SENDER_ID.match(name):
            raise ConfigError(f"transit key file name {name!r} is not a sender id (A-Z a-z 0-9 . _ -)")
        keys[name] = load_key_file(path)
    return keys


def write_key_file(path: Path, key: TransitKey) -> None:
    """Write a key file readable by its owner only; refuses to overwrite. Raises ConfigError."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path} exists; remove it first (a key file is never overwritten)") from None
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or type(exc).__name__}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(dump_key(key))
