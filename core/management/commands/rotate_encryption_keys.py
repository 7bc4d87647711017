from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import Model

from core.crypto import InvalidToken
from core.fields import EncryptedTextField

BATCH = 500


def encrypted_columns() -> list[tuple[type[Model], list[str]]]:
    found = []
    for model in apps.get_models():
        names = [f.name for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)]
        if names and model._meta.managed and not model._meta.proxy:
            found.append((model, names))
    return found


class Command(BaseCommand):
    help = (
        "Re-encrypt every encrypted column under the newest key in FIELD_ENCRYPTION_KEYS. "
        "Run after putting a new key first; then the old keys can be removed."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        total = 0
        for model, names in encrypted_columns():
            manager = model._default_manager
            pks = list(manager.order_by("pk").values_list("pk", flat=True))
            rotated = 0
            for start in range(0, len(pks), BATCH):
                # Reading decrypts with whichever key opens the value; update() encrypts with
                # the newest. Batches commit one by one, so a re-run after a failure is safe.
                with transaction.atomic():
                    batch = manager.select_for_update().filter(pk__in=pks[start : start + BATCH])
                    try:
                        rows = list(batch.values_list("pk", *names))
                    except InvalidToken as exc:
                        raise CommandError(
                            f"{model._meta.label}: a value in rows {start}-{start + BATCH} opens "
                            "with none of FIELD_ENCRYPTION_KEYS; earlier batches were rotated."
                        ) from exc
                    for pk, *values in rows:
                        updates = {
                            n: v for n, v in zip(names, values, strict=True) if v is not None
                        }
                        if updates:
                            manager.filter(pk=pk).update(**updates)
                            rotated += 1
            total += rotated
            self.stdout.write(
                f"{model._meta.label}: {rotated} row(s) re-encrypted ({', '.join(names)})"
            )
        self.stdout.write(self.style.SUCCESS(f"Done: {total} row(s) re-encrypted."))
