"""Field encryption keys: a ``MultiFernet`` over ``FIELD_ENCRYPTION_KEYS`` (newest first).

New values are encrypted with the first key; any listed key decrypts. To rotate: put a new
key first, deploy, run ``manage.py rotate_encryption_keys``, then drop the old key.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

__all__ = ["InvalidToken", "decrypt", "encrypt", "key_ring"]


@lru_cache(maxsize=1)
def key_ring() -> MultiFernet:
    keys = list(settings.FIELD_ENCRYPTION_KEYS)
    if not keys:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS must name at least one Fernet key.")
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except ValueError as exc:
        # Deliberately not echoing the key: it is a secret.
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEYS holds a value that is not a Fernet key "
            "(32 url-safe base64-encoded bytes; make one with `manage.py generate_encryption_key`)."
        ) from exc


@receiver(setting_changed)
def _forget_keys(*, setting: str, **kwargs: object) -> None:
    if setting == "FIELD_ENCRYPTION_KEYS":
        key_ring.cache_clear()


def encrypt(plaintext: str) -> str:
    return key_ring().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    """Raises ``InvalidToken`` when no configured key opens ``token``."""
    return key_ring().decrypt(token.encode()).decode()
