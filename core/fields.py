from __future__ import annotations

from typing import Any

from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.expressions import Expression

from core.crypto import decrypt, encrypt


class EncryptedTextField(models.TextField):  # type: ignore[type-arg]
    """Text stored Fernet-encrypted at rest; reads give back the plaintext.

    Not searchable or orderable in SQL (every ciphertext differs). Reading a value no
    configured key opens raises ``cryptography.fernet.InvalidToken``: a missing key must fail
    loudly, never hand out ciphertext as if it were the secret.
    """

    description = "Encrypted text"

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if value is None:
            return None
        return encrypt(str(value))

    def from_db_value(
        self, value: str | None, expression: Expression, connection: BaseDatabaseWrapper
    ) -> str | None:
        if value is None:
            return None
        return decrypt(value)
