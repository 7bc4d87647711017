from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from core import checks  # noqa: F401  (registers the deploy checks)
        from core.db import install_fast_timestamps
        from core.logging import install_context_record_factory

        install_context_record_factory()
        install_fast_timestamps()
