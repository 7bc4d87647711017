"""Settings come from the environment, read once per process: each case runs in a subprocess."""

from __future__ import annotations

import json
import os
import secrets
import string
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]
PYTHON = str(ROOT / ".venv/bin/python")
# Everything these tests set or remove; nothing else from the outer environment matters.
OWNED = (
    "DEBUG",
    "SECRET_KEY",
    "FIELD_ENCRYPTION_KEYS",
    "DATABASE_URL",
    "REDIS_URL",
    "ALLOWED_HOSTS",
    "SECURE_SSL_REDIRECT",
    "SWITCHBOARD_VAR_DIR",
)
DUMP = """
import django, json
django.setup()
from django.conf import settings
db = settings.DATABASES["default"]
print(json.dumps({
    "engine": db["ENGINE"],
    "name": db["NAME"],
    "options": db.get("OPTIONS", {}),
    "conn_max_age": db.get("CONN_MAX_AGE"),
    "cache_backend": settings.CACHES["default"]["BACKEND"],
    "broker_url": settings.CELERY_BROKER_URL,
    "broker_options": settings.CELERY_BROKER_TRANSPORT_OPTIONS,
    "var_dir": settings.VAR_DIR,
}, default=str))
"""


def run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in OWNED}
    full_env |= {"DJANGO_SETTINGS_MODULE": "config.settings", **env}
    return subprocess.run(
        [PYTHON, *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def settings_in(**env: str) -> dict[str, Any]:
    result = run(["-c", DUMP], **env)
    assert result.returncode == 0, result.stdout + result.stderr
    values: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return values


def urls_from_environment() -> dict[str, str]:
    urls = {name: os.environ.get(name, "") for name in ("DATABASE_URL", "REDIS_URL")}
    if not all(urls.values()):
        pytest.skip("DATABASE_URL and REDIS_URL must be set (make test sets both)")
    return urls


def test_deploy_check_passes_with_production_settings(tmp_path: Path) -> None:
    alphabet = string.ascii_letters + string.digits + string.punctuation
    production = {
        "DEBUG": "false",
        "SECRET_KEY": "".join(secrets.choice(alphabet) for _ in range(60)),
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        **urls_from_environment(),
        "ALLOWED_HOSTS": "switchboard.example.com",
        "SECURE_SSL_REDIRECT": "true",
        "SWITCHBOARD_VAR_DIR": str(tmp_path),
    }
    check = ["manage.py", "check", "--deploy", "--fail-level", "WARNING"]
    result = run(check, **production)
    assert result.returncode == 0, result.stdout + result.stderr

    generated = ("SECRET_KEY", "FIELD_ENCRYPTION_KEYS", "DATABASE_URL", "REDIS_URL")
    embedded = {k: v for k, v in production.items() if k not in generated}
    result = run(check, **embedded)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "switchboard.W001" in output, output
    assert "switchboard.W002" in output, output


def test_database_url_selects_postgresql_with_a_pool(tmp_path: Path) -> None:
    url = "postgres://switchboard:secret@db.example.com:5432/switchboard"
    values = settings_in(DATABASE_URL=url, SWITCHBOARD_VAR_DIR=str(tmp_path))
    assert values["engine"] == "django.db.backends.postgresql"
    assert values["name"] == "switchboard"
    assert "pool" in values["options"], values
    assert values["conn_max_age"] == 0


def test_no_database_url_selects_sqlite_under_var_dir(tmp_path: Path) -> None:
    values = settings_in(SWITCHBOARD_VAR_DIR=str(tmp_path))
    assert values["engine"] == "django.db.backends.sqlite3"
    assert Path(values["name"]).parent == tmp_path.resolve()


def test_redis_url_selects_redis_cache_and_broker(tmp_path: Path) -> None:
    url = "redis://redis.example.com:6379/3"
    values = settings_in(REDIS_URL=url, SWITCHBOARD_VAR_DIR=str(tmp_path))
    assert values["cache_backend"] == "django.core.cache.backends.redis.RedisCache"
    assert values["broker_url"] == url


def test_no_redis_url_selects_the_filesystem_broker_under_var_dir(tmp_path: Path) -> None:
    values = settings_in(SWITCHBOARD_VAR_DIR=str(tmp_path))
    assert values["broker_url"] == "filesystem://"
    assert values["cache_backend"] == "django.core.cache.backends.filebased.FileBasedCache"
    options = values["broker_options"]
    for folder in ("data_folder_in", "data_folder_out", "control_folder"):
        path = Path(options[folder])
        assert path.is_dir(), options
        assert path.is_relative_to(tmp_path.resolve()), options


def test_an_invalid_boolean_names_the_variable(tmp_path: Path) -> None:
    result = run(["-c", DUMP], DEBUG="maybe", SWITCHBOARD_VAR_DIR=str(tmp_path))
    assert result.returncode != 0, result.stdout
    assert "ValueError: DEBUG must be a boolean (true/false), got 'maybe'" in result.stderr, (
        result.stderr
    )
