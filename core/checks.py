"""Deploy checks: production must not run on the secrets generated for the embedded stack, and
the security middleware (Django's and django-csp's) must be in place (under the subclass names
core.inline_middleware gives them)."""

from __future__ import annotations

from typing import Any

from csp.middleware import CSPMiddleware
from django.conf import settings
from django.core.checks import CheckMessage, Tags, Warning, register
from django.middleware import clickjacking, csrf, security
from django.utils.module_loading import import_string


@register(Tags.security, deploy=True)
def generated_secrets(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    if not settings.SECRET_KEY_FROM_ENV:
        messages.append(
            Warning(
                "SECRET_KEY is not set; a key generated into var/ is in use.",
                hint="Set SECRET_KEY (the same on every web and worker process).",
                id="switchboard.W001",
            )
        )
    if not settings.FIELD_ENCRYPTION_KEYS_FROM_ENV:
        messages.append(
            Warning(
                "FIELD_ENCRYPTION_KEYS is not set; a key generated into var/ encrypts tokens.",
                hint="Set FIELD_ENCRYPTION_KEYS (manage.py generate_encryption_key makes one).",
                id="switchboard.W002",
            )
        )
    if not settings.DATABASE_URL:
        messages.append(
            Warning(
                "DATABASE_URL is not set; the embedded SQLite database is in use.",
                hint="Set DATABASE_URL to a PostgreSQL database.",
                id="switchboard.W003",
            )
        )
    if not settings.REDIS_URL:
        messages.append(
            Warning(
                "REDIS_URL is not set; the filesystem broker and file cache are in use.",
                hint="Set REDIS_URL (Celery broker, cache and shared rate-limit budgets).",
                id="switchboard.W004",
            )
        )
    return messages


# What Django's security.W001-W003 look for, matched as classes rather than dotted paths.
_REQUIRED_MIDDLEWARE = (
    (security.SecurityMiddleware, "HSTS, nosniff, referrer policy and SSL redirect"),
    (clickjacking.XFrameOptionsMiddleware, "the X-Frame-Options header"),
    (csrf.CsrfViewMiddleware, "CSRF protection"),
    (CSPMiddleware, "the Content-Security-Policy header"),
)


@register(Tags.security, deploy=True)
def security_middleware(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    installed = [import_string(path) for path in settings.MIDDLEWARE]
    return [
        Warning(
            f"No {required.__name__} (or subclass) in MIDDLEWARE: {purpose} is off.",
            hint=f"Add core.inline_middleware.{required.__name__}.",
            id="switchboard.W005",
        )
        for required, purpose in _REQUIRED_MIDDLEWARE
        if not any(isinstance(cls, type) and issubclass(cls, required) for cls in installed)
    ]
