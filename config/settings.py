"""The one settings module. Every value comes from the environment (see README.md, Settings).

With no environment at all Switchboard runs on its embedded defaults: SQLite and kombu's
filesystem broker under ``var/``, a file cache, and secrets generated once into ``var/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dj_database_url
import django_stubs_ext
from cryptography.fernet import Fernet
from csp.constants import NONCE, NONE, SELF

from config.env import (
    env_bool,
    env_int,
    env_list,
    env_str,
    generate_django_secret,
    persisted_secret,
)

django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("SWITCHBOARD_VAR_DIR", str(BASE_DIR / "var"))).resolve()

DEBUG = env_bool("DEBUG", False)

# Secrets: from the environment in production; generated once into var/ for the embedded stack.
SECRET_KEY_FROM_ENV = bool(env_str("SECRET_KEY"))
SECRET_KEY = env_str("SECRET_KEY") or persisted_secret(
    VAR_DIR / "secret_key", generate_django_secret
)
FIELD_ENCRYPTION_KEYS_FROM_ENV = bool(env_str("FIELD_ENCRYPTION_KEYS"))
FIELD_ENCRYPTION_KEYS: list[str] = env_list("FIELD_ENCRYPTION_KEYS", []) or [
    persisted_secret(VAR_DIR / "field_encryption_key", lambda: Fernet.generate_key().decode())
]

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
PUBLIC_URL = env_str("PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "servestatic",
    "csp",
    "ninja",
    "allauth",
    "allauth.account",
    "core",
    "accounts",
    "integrations",
    "workflows",
]

# Every entry runs on the event loop under ASGI: ours are natively async, and Django's own (and
# django-csp's) are the subclasses in core.inline_middleware (Django's MiddlewareMixin would
# otherwise send each hook of each one to a thread: sixteen hops per request; see
# bench/RESULTS.md). The API envelope sits inside the middleware that set security headers, so
# the answers it re-shapes (Django's 404, 400, 403) keep them; the address throttle refuses
# before anything else reads the request.
MIDDLEWARE = [
    "core.middleware.request_context_middleware",
    "core.inline_middleware.SecurityMiddleware",
    "servestatic.middleware.ServeStaticMiddleware",
    "core.inline_middleware.XFrameOptionsMiddleware",
    "core.inline_middleware.CSPMiddleware",
    "core.middleware.api_envelope_middleware",
    "core.throttling.ip_throttle_middleware",
    "core.inline_middleware.SessionMiddleware",
    "core.inline_middleware.CommonMiddleware",
    "core.inline_middleware.CsrfViewMiddleware",
    "core.inline_middleware.AuthenticationMiddleware",
    "core.inline_middleware.MessageMiddleware",
    "allauth.account.middleware.AccountMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES: list[dict[str, Any]] = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: PostgreSQL through psycopg 3 and its connection pool when DATABASE_URL is set,
# SQLite under var/ otherwise.
DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    _db: dict[str, Any] = dict(dj_database_url.parse(DATABASE_URL))
    if _db["ENGINE"] == "django.db.backends.postgresql":
        _db["CONN_MAX_AGE"] = 0  # the pool owns connection reuse
        _db.setdefault("OPTIONS", {})["pool"] = {
            "min_size": env_int("DATABASE_POOL_MIN_SIZE", 1),
            "max_size": env_int("DATABASE_POOL_MAX_SIZE", 10),
            "timeout": 10,
        }
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    _db = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": VAR_DIR / "switchboard.sqlite3",
        "OPTIONS": {
            # WAL + IMMEDIATE: the web process, the worker and beat share one file safely.
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        },
    }
DATABASES: dict[str, dict[str, Any]] = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# API requests run their database work on this many long-lived threads per web process
# (core.asgi); other pages keep Django's thread per request.
ASGI_DB_THREADS = env_int("ASGI_DB_THREADS", 4)

# Redis (broker and cache) when REDIS_URL is set; a file cache and kombu's filesystem
# transport under var/ otherwise. Both work across processes on one machine.
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CACHES: dict[str, dict[str, Any]] = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "switchboard"),
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

CELERY_BROKER_URL = REDIS_URL or "filesystem://"
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {"visibility_timeout": 3600}
if not REDIS_URL:
    _broker_dir = VAR_DIR / "broker"
    for _sub in ("queue", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
        "polling_interval": 0.2,
    }
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
WORKER_HEARTBEAT_SECONDS = float(env_int("WORKER_HEARTBEAT_SECONDS", 30))
CELERY_BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "worker-heartbeat": {
        "task": "core.heartbeat",
        "schedule": WORKER_HEARTBEAT_SECONDS,
        "options": {"expires": WORKER_HEARTBEAT_SECONDS},
    },
    "sync-schedule": {
        "task": "integrations.sync.schedule",
        "schedule": 60.0,
        "options": {"expires": 60.0},
    },
    "sync-watchdog": {
        "task": "integrations.sync.watchdog",
        "schedule": 60.0,
        "options": {"expires": 60.0},
    },
}

# The sync engine (integrations/sync): how often each connection syncs unless it says
# otherwise, how long one task works on a run before handing it back to the queue, when a
# silent run counts as abandoned (its worker died) and the watchdog sends it again, and how far
# each incremental read reaches back before the previous one's end (provider indexing lag).
SYNC_DEFAULT_FREQUENCY_SECONDS = env_int("SYNC_DEFAULT_FREQUENCY_SECONDS", 15 * 60)
SYNC_SLICE_SECONDS = float(env_int("SYNC_SLICE_SECONDS", 20))
SYNC_LEASE_SECONDS = float(env_int("SYNC_LEASE_SECONDS", 180))
SYNC_OVERLAP_SECONDS = env_int("SYNC_OVERLAP_SECONDS", 120)
SYNC_PAGE_ATTEMPTS = env_int("SYNC_PAGE_ATTEMPTS", 6)
SYNC_RETRY_BASE_SECONDS = 0.5
SYNC_RETRY_MAX_SECONDS = 20.0

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# django-allauth signs people in (email + password); CRM tokens are not its business.
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD: str | None = None
ACCOUNT_EMAIL_VERIFICATION = env_str("ACCOUNT_EMAIL_VERIFICATION", "none")
ACCOUNT_ADAPTER = "accounts.adapter.AccountAdapter"
LOGIN_REDIRECT_URL = "/"
ACCOUNT_LOGOUT_REDIRECT_URL = "/"
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # servestatic warns on every start without it
SERVESTATIC_USE_FINDERS = DEBUG
SERVESTATIC_AUTOREFRESH = DEBUG

# Security. Cookies are secure and HSTS is on unless DEBUG; TLS redirects are the proxy's
# job unless SECURE_SSL_REDIRECT is set.
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
# Lax, not Strict: the provider's redirect back to the OAuth callback is a cross-site navigation
# that must carry the session (the wizard binds its state to the browser that started).
SESSION_COOKIE_SAMESITE = CSRF_COOKIE_SAMESITE = "Lax"
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# HSTS preloading cannot be undone quickly, so it is the operator's opt-in per domain
# (SECURE_HSTS_PRELOAD), not something `check --deploy` should push on every install.
# security.W001-W003 look for Django's middleware by its dotted path; ours are subclasses run
# without thread hops (core.inline_middleware), and switchboard.W005 checks for them instead.
SILENCED_SYSTEM_CHECKS = ["security.W021", "security.W001", "security.W002", "security.W003"]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if env_bool("TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# How many proxies in front of Switchboard append the address they saw to X-Forwarded-For; the
# client address (throttles) is then the entry the outermost of them appended. 0: REMOTE_ADDR
# only, never the header (uvicorn already rewrites REMOTE_ADDR from it for connections from its
# --forwarded-allow-ips, 127.0.0.1 by default).
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)
NINJA_NUM_PROXIES = TRUSTED_PROXY_COUNT
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 2 * 1024 * 1024)

# CRM providers. Each takes <KEY>_CLIENT_ID, <KEY>_CLIENT_SECRET, <KEY>_REDIRECT_URI,
# <KEY>_APP_URL and <KEY>_API_URL; SWITCHBOARD_SANDBOX_URL points every provider at the local
# sandbox (manage.py sandbox) at once, with the sandbox's own demo app credentials.
SWITCHBOARD_SANDBOX_URL = env_str("SWITCHBOARD_SANDBOX_URL").rstrip("/")


def _provider(key: str, app_url: str, api_url: str, **extra: str) -> dict[str, str]:
    name, sandbox = key.upper(), SWITCHBOARD_SANDBOX_URL
    return extra | {
        "client_id": env_str(f"{name}_CLIENT_ID", f"sandbox-{key}-client" if sandbox else ""),
        "client_secret": env_str(
            f"{name}_CLIENT_SECRET", f"sandbox-{key}-secret" if sandbox else ""
        ),
        "redirect_uri": env_str(f"{name}_REDIRECT_URI", f"{PUBLIC_URL}/connect/{key}/callback"),
        "app_url": env_str(f"{name}_APP_URL", f"{sandbox}/{key}/app" if sandbox else app_url),
        "api_url": env_str(f"{name}_API_URL", f"{sandbox}/{key}/api" if sandbox else api_url),
    }


# The sandbox serves Salesforce's instance API over TLS (simple-salesforce insists on https)
# with a CA of its own, written here; clients trust it only in sandbox mode.
SWITCHBOARD_SANDBOX_CA_FILE = env_str(
    "SWITCHBOARD_SANDBOX_CA_FILE", str(VAR_DIR / "sandbox" / "ca.pem")
)
_SF_LOGIN = f"{SWITCHBOARD_SANDBOX_URL}/salesforce" if SWITCHBOARD_SANDBOX_URL else ""
_HUBSPOT_WRITE_ID = env_str(
    "HUBSPOT_WRITE_ID_PROPERTY", "switchboard_write_id" if SWITCHBOARD_SANDBOX_URL else ""
)
PROVIDERS: dict[str, dict[str, str]] = {
    "hubspot": _provider(
        "hubspot",
        "https://app.hubspot.com",
        "https://api.hubapi.com",
        # The custom property every create is stamped with (the outbox's write id), so an
        # uncertain create can be found again; the sandbox defines it, a real portal must.
        # Reads ask for it too (HubSpot returns only the properties a read names), so a search
        # for a batch of write ids says which record is whose.
        write_id_property=_HUBSPOT_WRITE_ID,
        **dict.fromkeys(
            ("contact_properties", "company_properties", "deal_properties"), _HUBSPOT_WRITE_ID
        ),
    ),
    # app_url is the production login host; the API host is each org's own instance_url.
    "salesforce": _provider(
        "salesforce",
        "https://login.salesforce.com",
        "",
        sandbox_login_url=env_str(
            "SALESFORCE_SANDBOX_LOGIN_URL",
            f"{_SF_LOGIN}/test" if _SF_LOGIN else "https://test.salesforce.com",
        ),
        my_domain_url=env_str(
            "SALESFORCE_MY_DOMAIN_URL",
            f"{_SF_LOGIN}/mydomain/{{domain}}" if _SF_LOGIN else "https://{domain}",
        ),
        api_version=env_str("SALESFORCE_API_VERSION", "62.0"),
        ca_file=SWITCHBOARD_SANDBOX_CA_FILE if SWITCHBOARD_SANDBOX_URL else "",
        # An External ID field on Contact, Account and Opportunity (see hubspot's above).
        write_id_property=env_str(
            "SALESFORCE_WRITE_ID_PROPERTY",
            "Switchboard_Write_Id__c" if SWITCHBOARD_SANDBOX_URL else "",
        ),
    ),
}
if SWITCHBOARD_SANDBOX_URL:
    PROVIDERS["salesforce"]["app_url"] = env_str("SALESFORCE_APP_URL", f"{_SF_LOGIN}/login")
PROVIDER_TIMEOUT_SECONDS = float(env_int("PROVIDER_TIMEOUT_SECONDS", 20))


# Content Security Policy (django-csp, run inline by core.inline_middleware.CSPMiddleware), by
# what a response is. HTML pages (wizard, admin, account pages, home): scripts only from our own
# origin, no inline script anywhere; <style> elements need the request's nonce (templates:
# nonce="{{ request.csp_nonce }}"); no style attribute either (ours are classes: the admin's in
# core/static/core/admin.css; scripts may still set styles through the DOM). Forms
# post to us, and the connect wizard's form (Salesforce's login host choice) is answered with a
# redirect to the provider's consent page, which Chromium checks against form-action too: every
# configured provider's consent origins are allowed, My Domain hosts (validated by the provider,
# *.my.salesforce.com) as a wildcard.
def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


_CONSENT_ORIGINS = sorted(
    {
        origin
        for provider in PROVIDERS.values()
        for key in ("app_url", "sandbox_login_url", "my_domain_url")
        if (origin := _origin(provider.get(key, "").replace("{domain}", "*.my.salesforce.com")))
    }
)
CONTENT_SECURITY_POLICY: dict[str, Any] = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, NONCE],
        "img-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "frame-ancestors": [NONE],
        "form-action": [SELF, *_CONSENT_ORIGINS],
    }
}
# /api/v1/docs: Swagger UI from our own static files (Ninja serves its bundled copy when "ninja"
# is an installed app, so no CDN); its stylesheet draws icons from data: URIs.
CONTENT_SECURITY_POLICY_API_DOCS: dict[str, Any] = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "object-src": [NONE],
        "base-uri": [SELF],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
    }
}
# Everything else (the API's JSON, webhook answers): nothing to load, nothing to frame.
CONTENT_SECURITY_POLICY_NON_HTML: dict[str, Any] = {
    "DIRECTIVES": {"default-src": [NONE], "frame-ancestors": [NONE]}
}

# The write outbox (integrations/outbox): every CRM write is a CrmWrite row before it is sent.
# An API write waits OUTBOX_INLINE_SECONDS for the provider, then answers 202 and the write
# goes on in the background. Retryable failures wait a full-jitter exponential backoff
# (base * 2^attempt, capped) or the provider's Retry-After, whichever is longer; after
# OUTBOX_MAX_ATTEMPTS the write is dead-lettered. A claimed write holds a lease of
# OUTBOX_LEASE_SECONDS (longer than any one send: a few provider calls at
# PROVIDER_TIMEOUT_SECONDS each); the sweep (beat, every OUTBOX_SWEEP_SECONDS) sends due writes
# and treats an expired lease as an uncertain attempt (its worker died).
OUTBOX_INLINE_SECONDS = float(env_str("OUTBOX_INLINE_SECONDS", "10"))
OUTBOX_INLINE_BATCH_MAX = env_int("OUTBOX_INLINE_BATCH_MAX", 1000)
OUTBOX_MAX_ATTEMPTS = env_int("OUTBOX_MAX_ATTEMPTS", 8)
OUTBOX_BACKOFF_BASE_SECONDS = float(env_str("OUTBOX_BACKOFF_BASE_SECONDS", "2"))
OUTBOX_BACKOFF_MAX_SECONDS = float(env_str("OUTBOX_BACKOFF_MAX_SECONDS", "900"))
OUTBOX_LEASE_SECONDS = float(env_str("OUTBOX_LEASE_SECONDS", "180"))
OUTBOX_SWEEP_SECONDS = float(env_str("OUTBOX_SWEEP_SECONDS", "15"))
OUTBOX_SWEEP_LIMIT = env_int("OUTBOX_SWEEP_LIMIT", 2000)
OUTBOX_QUEUE = env_str("OUTBOX_QUEUE", "writes")
# How far before a write's creation a record found while reconciling may have been created
# (clock skew between us and the provider) and still count as this write's.
OUTBOX_RECONCILE_SKEW_SECONDS = float(env_str("OUTBOX_RECONCILE_SKEW_SECONDS", "300"))
CELERY_BEAT_SCHEDULE["outbox-sweep"] = {
    "task": "integrations.outbox.sweep",
    "schedule": OUTBOX_SWEEP_SECONDS,
    "options": {"expires": OUTBOX_SWEEP_SECONDS, "queue": OUTBOX_QUEUE},
}


# Shared rate-limit budgets (integrations/ratelimit): one per provider account, in Redis when
# REDIS_URL is set, else in the database (RATE_LIMIT_STORAGE: auto, redis or database). A call
# waits for budget up to RATE_LIMIT_MAX_WAIT_SECONDS, else fails with rate_limited and a
# retry_after. Each window keeps RATE_LIMIT_HEADROOM of its calls unspent (a share, rounded
# down: a 5-per-second window keeps none, HubSpot's 190 per 10 s keeps 3). A call is stamped
# when it is sent and stamped again when its answer arrives, so it stays counted until one
# window after the answer (never shorter than the provider counts it); while calls are still in
# flight, a new one starts only when RATE_LIMIT_MARGIN_SECONDS past the window has room. Sleeps
# get up to RATE_LIMIT_JITTER_SECONDS of jitter. A refusal without Retry-After blocks the
# account for RATE_LIMIT_BLOCK_SECONDS; a spent rolling daily allocation (Salesforce) is tried
# again after RATE_LIMIT_DAILY_RECHECK_SECONDS. RATE_LIMIT_OVERRIDES sets or caps limits per
# provider window, e.g. "hubspot.ten_secondly_rolling=190,hubspot.daily=500000".
def _rate_limit_overrides(raw: str) -> dict[str, dict[str, int]]:
    found: dict[str, dict[str, int]] = {}
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        name, sep, value = item.partition("=")
        provider, dot, window = name.strip().partition(".")
        if not (sep and dot and provider and window and value.strip().isdigit()):
            raise ValueError(f"RATE_LIMIT_OVERRIDES: expected provider.window=limit, got {item!r}")
        found.setdefault(provider, {})[window] = int(value)
    return found


RATE_LIMIT_STORAGE = env_str("RATE_LIMIT_STORAGE", "auto")
RATE_LIMIT_KEY_PREFIX = env_str("RATE_LIMIT_KEY_PREFIX", "switchboard:ratelimit")
RATE_LIMIT_MAX_WAIT_SECONDS = float(env_str("RATE_LIMIT_MAX_WAIT_SECONDS", "30"))
# Calls go out evenly: beside each long window, one of this many seconds allowing its steady rate
# (0 turns pacing off and lets a whole window's worth go at once).
RATE_LIMIT_PACE_SECONDS = float(env_str("RATE_LIMIT_PACE_SECONDS", "1"))
RATE_LIMIT_HEADROOM = float(env_str("RATE_LIMIT_HEADROOM", "0.02"))
RATE_LIMIT_MARGIN_SECONDS = float(env_str("RATE_LIMIT_MARGIN_SECONDS", "0.25"))
RATE_LIMIT_JITTER_SECONDS = float(env_str("RATE_LIMIT_JITTER_SECONDS", "0.1"))
RATE_LIMIT_BLOCK_SECONDS = float(env_str("RATE_LIMIT_BLOCK_SECONDS", "10"))
RATE_LIMIT_DAILY_RECHECK_SECONDS = float(env_str("RATE_LIMIT_DAILY_RECHECK_SECONDS", "900"))
RATE_LIMIT_OVERRIDES = _rate_limit_overrides(env_str("RATE_LIMIT_OVERRIDES"))

TOKEN_REFRESH_LEEWAY_SECONDS = 300
OAUTH_ATTEMPT_TTL_SECONDS = 600

# The REST API.
API_KEY_LAST_USED_RESOLUTION_SECONDS = 60
API_THROTTLE_AUTH_RATE = env_str("API_THROTTLE_AUTH_RATE", "6000/m")
API_THROTTLE_ANON_RATE = env_str("API_THROTTLE_ANON_RATE", "600/m")
# Every /api/ request per client address, before authentication (core.throttling): bounds one
# address cycling many keys. Twice one key's rate, so a single busy key never meets it.
API_THROTTLE_IP_RATE = env_str("API_THROTTLE_IP_RATE", "12000/m")
# Where the throttles count (a ``limits`` storage URI): Redis when configured, else in memory.
API_THROTTLE_STORAGE = env_str("API_THROTTLE_STORAGE", REDIS_URL or "memory://")
CONNECT_SESSION_MAX_TTL_SECONDS = 30 * 60
HEALTH_CHECK_TIMEOUT_SECONDS = 3.0

# Incoming provider webhooks (integrations/webhooks, POST /webhooks/<provider>): the largest
# body accepted (HubSpot batches up to 100 events; larger answers 413 and the next incremental
# sync catches the changes), how old a signed request may be (HubSpot's rule: five minutes),
# and after how long a stored event still waiting is sent to the worker again (a lost task).
WEBHOOK_MAX_BODY_BYTES = env_int("WEBHOOK_MAX_BODY_BYTES", 1024 * 1024)
WEBHOOK_SIGNATURE_MAX_AGE_SECONDS = 300
WEBHOOK_REDISPATCH_AFTER_SECONDS = env_int("WEBHOOK_REDISPATCH_AFTER_SECONDS", 120)
CELERY_BEAT_SCHEDULE["webhooks-redispatch"] = {
    "task": "integrations.webhooks.redispatch",
    "schedule": 60.0,
    "options": {"expires": 60.0, "queue": "sync"},
}

# Agent workflows (workflows/): the chat model (LangChain's "provider:model", e.g.
# "openai:gpt-4o-mini", with that provider's package installed and its key in the environment;
# empty: every workflow takes its deterministic path), where checkpoints live (empty: beside the
# database: PostgreSQL itself, or a SQLite file in VAR_DIR), when a silent running run counts as
# abandoned (its worker died) and the watchdog sends it again, and the website enrichment limits.
LLM_MODEL = env_str("LLM_MODEL", "")
LLM_TEMPERATURE = float(env_str("LLM_TEMPERATURE", "0"))
LLM_MAX_TOOL_ROUNDS = env_int("LLM_MAX_TOOL_ROUNDS", 8)
WORKFLOW_CHECKPOINT_SQLITE = env_str(
    "WORKFLOW_CHECKPOINT_SQLITE", str(VAR_DIR / "checkpoints.sqlite3")
)
WORKFLOW_QUEUE = env_str("WORKFLOW_QUEUE", "workflows")
WORKFLOW_LEASE_SECONDS = float(env_str("WORKFLOW_LEASE_SECONDS", "120"))
WORKFLOW_NODE_ATTEMPTS = env_int("WORKFLOW_NODE_ATTEMPTS", 3)
WORKFLOW_WRITE_WAIT_SECONDS = float(env_str("WORKFLOW_WRITE_WAIT_SECONDS", "60"))
WORKFLOW_TRIGGER_MAX_RUNS = env_int("WORKFLOW_TRIGGER_MAX_RUNS", 50)
# Extra modules that register graphs (``workflows.registry.register``) at start-up, besides
# the built-in ones in workflows.graphs: e.g. the benchmarks' graph ("bench.graphs").
WORKFLOW_GRAPH_MODULES = env_list("WORKFLOW_GRAPH_MODULES", [])
ENRICH_TIMEOUT_SECONDS = float(env_str("ENRICH_TIMEOUT_SECONDS", "5"))
ENRICH_MAX_BYTES = env_int("ENRICH_MAX_BYTES", 512 * 1024)
# Where a company's home page is fetched from; the sandbox serves made-up ones for any domain.
ENRICH_URL_TEMPLATE = env_str(
    "ENRICH_URL_TEMPLATE",
    f"{SWITCHBOARD_SANDBOX_URL}/sites/{{domain}}/"
    if SWITCHBOARD_SANDBOX_URL
    else "https://{domain}/",
)
# Private and loopback addresses are refused unless this is true (the sandbox serves the
# demo companies' websites on loopback).
ENRICH_ALLOW_PRIVATE = env_bool("ENRICH_ALLOW_PRIVATE", bool(SWITCHBOARD_SANDBOX_URL))
CELERY_BEAT_SCHEDULE["workflows-schedule"] = {
    "task": "workflows.schedule",
    "schedule": 30.0,
    "options": {"expires": 30.0},
}
CELERY_BEAT_SCHEDULE["workflows-watchdog"] = {
    "task": "workflows.watchdog",
    "schedule": 30.0,
    "options": {"expires": 30.0},
}

# Logging: JSON lines in production, readable lines in development; every line carries the
# request id, organisation and user from core.context (core.logging's record factory).
LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOG_FORMAT = env_str("LOG_FORMAT", "console" if DEBUG else "json")
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "core.logging.JsonFormatter"},
        "console": {"()": "core.logging.ConsoleFormatter"},
    },
    "handlers": {
        "default": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
        }
    },
    "root": {"handlers": ["default"], "level": LOG_LEVEL},
    "loggers": {
        # Django logs every 4xx/5xx on this logger; our envelope layer logs them with more
        # context, so keep Django's copy for real server errors only.
        "django.request": {"level": "ERROR"},
        "django.db.backends": {"level": "INFO"},
    },
}
