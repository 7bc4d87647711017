"""The encrypted field and `rotate_encryption_keys`, on a throwaway table of the real database."""

from __future__ import annotations

from collections.abc import Iterator
from io import StringIO

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.core.management import CommandError, call_command
from django.db import connection, models
from django.test import override_settings

from core.fields import EncryptedTextField


class Vault(models.Model):
    secret = EncryptedTextField(null=True)
    objects: models.Manager[Vault] = models.Manager()

    class Meta:
        app_label = "core"

    def __str__(self) -> str:
        return f"vault {self.pk}"


@pytest.fixture
def vault_table(transactional_db: None) -> Iterator[None]:
    with connection.schema_editor() as editor:
        editor.create_model(Vault)
    try:
        yield
    finally:
        with connection.schema_editor() as editor:
            editor.delete_model(Vault)


def stored(pk: int) -> str | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM core_vault WHERE id = %s", [pk])
        value: str | None = cursor.fetchone()[0]
        return value


def rotate() -> str:
    out = StringIO()
    call_command("rotate_encryption_keys", stdout=out)
    return out.getvalue()


OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def test_values_are_ciphertext_at_rest_and_plaintext_in_python(vault_table: None) -> None:
    with override_settings(FIELD_ENCRYPTION_KEYS=[OLD]):
        row = Vault.objects.create(secret="refresh-token-123")
        raw = stored(row.pk)
        assert raw is not None
        assert "refresh-token-123" not in raw
        assert Fernet(OLD.encode()).decrypt(raw.encode()) == b"refresh-token-123"
        assert Vault.objects.get(pk=row.pk).secret == "refresh-token-123"
        assert Vault.objects.create(secret=None).secret is None


def test_rotation_moves_every_value_to_the_newest_key(vault_table: None) -> None:
    with override_settings(FIELD_ENCRYPTION_KEYS=[OLD]):
        rows = [Vault.objects.create(secret=f"token-{n}") for n in range(3)]
        Vault.objects.create(secret=None)
    with override_settings(FIELD_ENCRYPTION_KEYS=[NEW, OLD]):
        # Both keys read; new writes use NEW, old rows are still under OLD until rotated.
        assert Vault.objects.get(pk=rows[0].pk).secret == "token-0"
        output = rotate()
        assert "core.Vault: 3 row(s) re-encrypted" in output
    with override_settings(FIELD_ENCRYPTION_KEYS=[NEW]):  # the old key is gone
        assert sorted(Vault.objects.exclude(secret=None).values_list("secret", flat=True)) == [
            "token-0",
            "token-1",
            "token-2",
        ]
        for row in rows:
            raw = stored(row.pk)
            assert raw is not None
            with pytest.raises(InvalidToken):
                Fernet(OLD.encode()).decrypt(raw.encode())


def test_a_value_no_key_opens_fails_loudly(vault_table: None) -> None:
    with override_settings(FIELD_ENCRYPTION_KEYS=[OLD]):
        row = Vault.objects.create(secret="s")
    with override_settings(FIELD_ENCRYPTION_KEYS=[NEW]):
        with pytest.raises(InvalidToken):
            Vault.objects.get(pk=row.pk)
        with pytest.raises(CommandError, match=r"core\.Vault"):
            rotate()
        assert stored(row.pk) is not None  # nothing was overwritten


def test_bad_key_configuration_names_no_secret(vault_table: None) -> None:
    from django.core.exceptions import ImproperlyConfigured

    with override_settings(FIELD_ENCRYPTION_KEYS=["not-a-fernet-key-but-secret"]):
        with pytest.raises(ImproperlyConfigured) as err:
            Vault.objects.create(secret="x")
        assert "not-a-fernet-key-but-secret" not in str(err.value)
