"""API key material: generation, hashing, constant-time checking. No database here."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass

KEY_SCHEME = "sbk"
_PREFIX_ALPHABET = string.ascii_letters + string.digits
_PREFIX_RANDOM_CHARS = 8


@dataclass(frozen=True, slots=True)
class NewKey:
    prefix: str
    secret: str  # the whole key, shown once
    key_hash: str


def hash_key(key: str) -> str:
    # Keys carry 256 random bits, so a fast hash is enough (no brute force to slow down).
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key() -> NewKey:
    prefix = (
        KEY_SCHEME
        + "_"
        + "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(_PREFIX_RANDOM_CHARS))
    )
    key = f"{prefix}_{secrets.token_urlsafe(32)}"
    return NewKey(prefix=prefix, secret=key, key_hash=hash_key(key))


def prefix_of(key: str) -> str | None:
    """The stored prefix a presented key claims, or None when it is not shaped like our keys."""
    scheme, _, rest = key.partition("_")
    random_part, sep, secret = rest.partition("_")
    if scheme != KEY_SCHEME or not sep or len(random_part) != _PREFIX_RANDOM_CHARS or not secret:
        return None
    return f"{scheme}_{random_part}"


def key_matches(key: str, key_hash: str) -> bool:
    return hmac.compare_digest(hash_key(key), key_hash)
