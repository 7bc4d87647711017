"""Secrets never in output: the whole flow, with everything logged at DEBUG, leaves no access
token, refresh token, client secret, API key, connect-session token, PKCE verifier,
authorization code, encryption key or SECRET_KEY in any log line, HTTP answer, admin page or
the OpenAPI document.

The flow runs on real parts: Switchboard under uvicorn (as the Procfile starts it, with
``LOG_LEVEL=DEBUG`` and uvicorn at ``--log-level debug``), a Celery worker at DEBUG, this
process (the wizard and the admin through Django's stack), the sandbox standing in for HubSpot
and Salesforce. In all three processes every logger is held at DEBUG, whatever a library sets
(the HubSpot SDK quietens urllib3 and its own loggers each time it builds a client). SQL is
logged with its parameters in this process only (``force_debug_cursor``); the server and the
worker run with ``DEBUG=false`` as in production, where Django logs no SQL. It
connects both providers through the wizard (HubSpot as an end customer with a connect-session
link, Salesforce as a signed-in member), writes through the outbox (a 500 retried by the
worker), syncs both, receives HubSpot's webhooks, refreshes tokens (expired at the provider,
about to expire, forced from the admin), runs the lead-qualification workflow to an approval
given in the admin, and fails on purpose (a provider 500, bad API keys, validation errors
carrying a real token, a provider validation error, an unreadable encrypted token: a 500, a
grant revoked at the provider: reauth), then reconnects and disconnects.

Learnt secrets: every token the sandbox issued (its control API lists them), the provider
client secrets in settings, every API key, the connect-session token, the PKCE verifier and
codes of the wizard runs, FIELD_ENCRYPTION_KEYS and SECRET_KEY. The sandbox's own log is not
read: it is the provider, whose job is to know the tokens.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest
from django.conf import settings as django_settings
from django.contrib import admin
from django.db import connection as db
from django.test import Client
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from accounts.models import ApiKey, Organization, Role
from config.celery import app as celery_app
from integrations.models import (
    Connection,
    ConnectionStatus,
    CrmWrite,
    OAuthAttempt,
    SyncRun,
    SyncStatus,
    WriteStatus,
)
from tests.conftest import new_key
from tests.factories import make_membership, make_user
from tests.processes import ROOT, free_port, spawn, stop, tail
from tests.workers import live_queue, process_env
from workflows.models import Approval, RunStatus, WorkflowRun

from .leaks import Finding, LogCapture, Secrets, needles_of

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

DOMAIN = "initech-systems.example.com"
SF_ORG_FIELD = re.compile(r'name="org"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="org"')


# --- what the flow saw --------------------------------------------------------------------


@dataclass
class Answer:
    source: str
    status: int
    body: str
    issued: frozenset[str] = frozenset()  # secrets this answer hands out by design


@dataclass
class Seen:
    answers: list[Answer] = field(default_factory=list)

    def add(self, source: str, status: int, body: str, issued: frozenset[str]) -> None:
        self.answers.append(Answer(source, status, body, issued))

    def errors(self) -> list[Answer]:
        return [a for a in self.answers if a.status >= 400]


class Remote:
    """An HTTP caller of the uvicorn server (or any other process): its own logging is the
    test's, so it is paused in the capture; every answer is kept for the scan."""

    def __init__(self, base: str, capture: LogCapture, seen: Seen, key: str | None) -> None:
        self.base = base
        self.capture = capture
        self.seen = seen
        self.key = key
        self.http = httpx.Client(base_url=base, timeout=60, follow_redirects=False)

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        raw: bytes | None = None,
        key: str | None = "default",
        issued: frozenset[str] = frozenset(),
    ) -> httpx.Response:
        bearer = self.key if key == "default" else key
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        if raw is not None:
            headers["Content-Type"] = "application/json"
        with self.capture.paused():
            response = self.http.request(
                method, path, json=json if raw is None else None, content=raw, headers=headers
            )
        where = f"uvicorn {method} {path.split('?', 1)[0]}"  # a query may hold a secret
        self.seen.add(where, response.status_code, response.text, issued)
        return response

    def data(self, method: str, path: str, status: int = 200, **kw: Any) -> Any:
        response = self.call(method, path, **kw)
        assert response.status_code == status, f"{method} {path}: {response.text}"
        return response.json()["data"]

    def close(self) -> None:
        self.http.close()


class Local:
    """Django's test client in this process (its logs are captured), answers kept."""

    def __init__(self, client: Client, seen: Seen, key: str | None = None) -> None:
        self.client = client
        self.seen = seen
        self.key = key

    def _keep(self, method: str, path: str, response: Any) -> Any:
        body = b"" if response.streaming else response.content
        self.seen.add(
            f"local {method} {path.split('?', 1)[0]}",
            response.status_code,
            body.decode(errors="replace"),
            frozenset(),
        )
        return response

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}

    def get(self, path: str, **kw: Any) -> Any:
        return self._keep("GET", path, self.client.get(path, headers=self._headers(), **kw))

    def post(self, path: str, data: Any = None, **kw: Any) -> Any:
        return self._keep("POST", path, self.client.post(path, data, headers=self._headers(), **kw))

    def api(self, method: str, path: str, body: Any = None) -> Any:
        response = self.client.generic(
            method,
            path,
            orjson.dumps(body) if body is not None else b"",
            content_type="application/json",
            headers=self._headers(),
        )
        return self._keep(method, path, response)


# --- processes ----------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    proc: Any
    log: Path

    def alive(self) -> bool:
        return bool(self.proc.poll() is None)

    def tail(self) -> str:
        return tail(self.log, 60, title=f"{self.name} output")


def _wait(what: str, check: Callable[[], bool], procs: list[Proc], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        for proc in procs:
            assert proc.alive(), f"{proc.name} died{proc.tail()}"
        assert time.monotonic() < deadline, f"timed out: {what}" + "".join(p.tail() for p in procs)
        time.sleep(0.25)


# Imported by every Python process started with this directory on PYTHONPATH, before anything
# else: every logger stays at DEBUG whatever sets its level (the HubSpot SDK puts urllib3's and
# its own loggers at WARNING each time it builds a client; Django's LOGGING puts
# django.request at ERROR).
PIN_DEBUG = """
import logging

_set_level = logging.Logger.setLevel


def _pinned(logger, level):
    _set_level(logger, logging.DEBUG)


logging.Logger.setLevel = _pinned
logging.getLogger().setLevel(logging.DEBUG)
"""


def debug_pinned_env(tmp_path: Path, env: dict[str, str]) -> dict[str, str]:
    site = tmp_path / "pin-debug"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(PIN_DEBUG)
    path = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH", "")]))
    return env | {"PYTHONPATH": path, "LOG_LEVEL": "DEBUG"}


def start_web(tmp_path: Path, env: dict[str, str], port: int, procs: list[Proc]) -> Proc:
    """uvicorn with the Procfile's flags (its access log is off: ours leaves query strings
    out), logging at DEBUG."""
    procfile = (ROOT / "Procfile").read_text()
    web = next(line for line in procfile.splitlines() if line.startswith("web:"))
    assert "--no-access-log" in web, "the test runs uvicorn as the Procfile does"
    log = tmp_path / "uvicorn.log"
    command = [str(ROOT / ".venv/bin/uvicorn"), "config.asgi:application"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--lifespan", "off"]
    command += ["--no-access-log", "--log-level", "debug"]
    web_proc = Proc("uvicorn", spawn(command, env=env, log=log), log)
    procs.append(web_proc)

    def up() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=2).status_code < 600
        except httpx.HTTPError:
            return False

    _wait("uvicorn up", up, [web_proc], timeout=40)
    return web_proc


def start_worker(tmp_path: Path, env: dict[str, str], queues: str, procs: list[Proc]) -> Proc:
    log = tmp_path / "worker.log"
    command = [str(ROOT / ".venv/bin/celery"), "-A", "config", "worker", "-Q", queues]
    command += ["--pool", "threads", "--concurrency", "4", "--without-gossip"]
    command += ["--without-mingle", "--hostname", f"secrets-{uuid.uuid4().hex[:8]}@%h"]
    command += ["--loglevel", "DEBUG"]
    worker = Proc("worker", spawn(command, env=env, log=log), log)
    procs.append(worker)
    _wait("worker ready", lambda: "ready." in log.read_text(errors="replace"), [worker], 40)
    return worker


# --- the sandbox's consent pages, answered as a person would ------------------------------


def hubspot_consent(capture: LogCapture, authorize_url: str, portal: str = "62515") -> str:
    with capture.paused():
        page = httpx.get(authorize_url, timeout=10)
        assert page.status_code == 200, page.text
        answer = httpx.post(authorize_url, data={"portal": portal, "decision": "allow"}, timeout=10)
    assert answer.status_code in (302, 303), answer.text
    return str(answer.headers["location"])


def salesforce_consent(capture: LogCapture, authorize_url: str) -> str:
    with capture.paused():
        page = httpx.get(authorize_url, timeout=10)
        found = SF_ORG_FIELD.search(page.text)
        assert found, page.text
        org = found.group(1) or found.group(2)
        answer = httpx.post(authorize_url, data={"org": org, "decision": "allow"}, timeout=10)
    assert answer.status_code in (302, 303), answer.text
    return str(answer.headers["location"])


def code_of(redirect: str) -> str:
    return parse_qs(urlsplit(redirect).query)["code"][0]


# --- the admin, every page ---------------------------------------------------------------

STANDARD_VIEWS = {"changelist", "add", "history", "delete", "change", "autocomplete"}


def crawl_admin(local: Local) -> int:
    """The index, each app, each registered model's changelist and add page, and the change
    and history page of every object, and every custom GET view taking an object id."""
    pages = 0

    def visit(url: str) -> None:
        nonlocal pages
        response = local.get(url)
        assert response.status_code in (200, 302, 403, 405), (url, response.status_code)
        pages += 1

    visit(reverse("admin:index"))
    labels = {model._meta.app_label for model in admin.site._registry}
    for label in sorted(labels):
        visit(reverse("admin:app_list", args=[label]))
    for model, model_admin in admin.site._registry.items():
        meta = model._meta
        base = f"admin:{meta.app_label}_{meta.model_name}"
        visit(reverse(f"{base}_changelist"))
        visit(reverse(f"{base}_add"))
        custom = [
            p.name
            for p in model_admin.get_urls()
            if p.name
            and p.name.startswith(f"{meta.app_label}_")
            and p.name.rsplit("_", 1)[-1] not in STANDARD_VIEWS
        ]
        for obj in model._default_manager.all()[:60]:
            visit(reverse(f"{base}_change", args=[obj.pk]))
            visit(reverse(f"{base}_history", args=[obj.pk]))
            for name in custom:
                try:
                    url = reverse(f"admin:{name}", args=[obj.pk])
                except NoReverseMatch:
                    continue  # takes more than the object (an approval id): driven by the flow
                visit(url)
    return pages


# --- the test -----------------------------------------------------------------------------


@pytest.fixture
def queue() -> Iterator[str]:
    with live_queue("test-secrets", "the secrets flow's worker and server") as name:
        yield name


@pytest.fixture
def capture() -> Iterator[LogCapture]:
    """This process's log capture, started by the test itself (so that pytest's own handlers
    of the test's call phase exist by then and keep their threshold), stopped here."""
    handler = LogCapture()
    forced = db.force_debug_cursor
    db.force_debug_cursor = True  # SQL with its parameters on django.db.backends
    try:
        yield handler
    finally:
        handler.stop()
        db.force_debug_cursor = forced


def test_no_secret_reaches_logs_answers_admin_or_openapi(
    sandbox: Any,
    sandbox_settings: Any,
    org: Organization,
    queue: str,
    capture: LogCapture,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    started = time.monotonic()
    capture.start()
    s = sandbox_settings
    s.WORKFLOW_QUEUE = s.OUTBOX_QUEUE = queue
    s.PROVIDERS = dict(s.PROVIDERS) | {
        "hubspot": dict(s.PROVIDERS["hubspot"]) | {"write_id_property": "switchboard_write_id"}
    }
    s.ENRICH_URL_TEMPLATE = f"{sandbox.url}/sites/{{domain}}/"
    s.ENRICH_ALLOW_PRIVATE = True
    s.OUTBOX_BACKOFF_BASE_SECONDS = 0.2
    s.OUTBOX_BACKOFF_MAX_SECONDS = 1.0

    secrets = Secrets(public={s.PROVIDERS[p]["client_id"] for p in ("hubspot", "salesforce")})
    seen = Seen()
    port = free_port()
    server = f"http://127.0.0.1:{port}"
    env = process_env(
        tmp_path,
        {
            "LOG_LEVEL": "DEBUG",
            "PUBLIC_URL": server,
            "SESSION_COOKIE_SECURE": "false",
            "CSRF_COOKIE_SECURE": "false",
            "WORKFLOW_QUEUE": queue,
            "OUTBOX_QUEUE": queue,
            "HUBSPOT_WRITE_ID_PROPERTY": "switchboard_write_id",
            "ENRICH_URL_TEMPLATE": f"{sandbox.url}/sites/{{domain}}/",
            "ENRICH_ALLOW_PRIVATE": "true",
            "OUTBOX_BACKOFF_BASE_SECONDS": "0.2",
            "OUTBOX_BACKOFF_MAX_SECONDS": "1",
            "WORKFLOW_WRITE_WAIT_SECONDS": "30",
            "PROVIDER_TIMEOUT_SECONDS": "10",
        },
    )
    env = debug_pinned_env(tmp_path, env)
    procs: list[Proc] = []
    # People and keys: an owner who is a superuser (the admin and the wizard), one API key
    # made here and one through the API.
    owner = make_user(is_staff=True, is_superuser=True)
    make_membership(organization=org, user=owner, role=Role.OWNER)
    first_key = new_key(org, "first")
    secrets.add("API key", first_key)
    browser_client = Client()
    browser_client.force_login(owner)
    member = Local(browser_client, seen)
    remote = Remote(server, capture, seen, first_key)
    wizard = Remote(server, capture, seen, None)  # the end customer's browser (cookies)
    try:
        web = start_web(tmp_path, env, port, procs)
        worker = start_worker(tmp_path, env, f"sync,{queue}", procs)
        made = remote.data("POST", "/api/v1/api-keys", 201, json={"name": "second"})
        second_key = made["key"]
        secrets.add("API key", second_key)
        seen.answers[-1].issued = frozenset({second_key})
        remote.key = second_key
        local_api = Local(Client(), seen, second_key)

        # 1. HubSpot through the wizard, as an end customer holding a connect-session link.
        sandbox.hubspot_webhooks(target_url=f"{server}/webhooks/hubspot", flush_ms=50)
        link = remote.data(
            "POST",
            "/api/v1/connect-sessions",
            201,
            json={"providers": ["hubspot"], "end_user": {"id": "cust-1", "email": "b@c.test"}},
        )
        session_token = link["token"]
        secrets.add("connect-session token", session_token)
        seen.answers[-1].issued = frozenset({session_token})
        wizard_link = urlsplit(link["url"])
        opened = wizard.call("GET", f"{wizard_link.path}?{wizard_link.query}", key=None)
        assert opened.status_code == 200, opened.text
        begun = wizard.call("GET", "/connect/hubspot/start", key=None)
        assert begun.status_code == 302, begun.text
        redirect = hubspot_consent(capture, begun.headers["location"])
        secrets.add("authorization code", code_of(redirect))
        back = urlsplit(redirect)
        done = wizard.call("GET", f"{back.path}?{back.query}", key=None)
        assert done.status_code == 200, done.text
        hubspot = Connection.objects.get(organization=org, provider="hubspot")
        hs = str(hubspot.pk)

        # 2. Salesforce through the wizard, as a signed-in member (this process).
        begun_sf = member.get("/connect/salesforce/start?environment=sandbox")
        assert begun_sf.status_code == 302
        secrets.add("PKCE verifier", OAuthAttempt.objects.latest("created_at").code_verifier)
        redirect = salesforce_consent(capture, begun_sf["Location"])
        secrets.add("authorization code", code_of(redirect))
        back = urlsplit(redirect)
        assert member.get(f"{back.path}?{back.query}").status_code == 200
        salesforce = Connection.objects.get(organization=org, provider="salesforce")
        sf = str(salesforce.pk)

        # 3. Writes through the outbox: inline, and one that meets a 500 and is retried by
        # the worker.
        company = remote.data(
            "POST",
            f"/api/v1/connections/{hs}/companies",
            201,
            json={"name": "Initech", "domain": DOMAIN, "employees": 500},
        )
        contact = remote.data(
            "POST",
            f"/api/v1/connections/{hs}/contacts",
            201,
            json={
                "email": f"pat@{DOMAIN}",
                "first_name": "Pat",
                "last_name": "Lee",
                "job_title": "VP Sales",
                "lifecycle_stage": "lead",
                "company_id": company["id"],
            },
        )
        sandbox.faults(fail_next=1, fail_status=500)
        deal = remote.call(
            "POST",
            f"/api/v1/connections/{hs}/deals",
            json={"name": "Initech renewal", "amount": "1000"},
        )
        assert deal.status_code in (201, 202), deal.text
        sf_contact = local_api.api(
            "POST",
            f"/api/v1/connections/{sf}/contacts",
            {"email": "ann@globex.example.com", "last_name": "Ann"},
        )
        assert sf_contact.status_code == 201, sf_contact.content
        _wait(
            "every write sent",
            lambda: not CrmWrite.objects.exclude(status=WriteStatus.SUCCEEDED).exists(),
            procs,
        )

        # 4. Syncs: HubSpot through the API (uvicorn), Salesforce from the admin's action;
        # both run in the worker.
        sandbox.expire_tokens()  # the worker refreshes too
        sandbox.sf_expire_tokens()
        remote.data("POST", f"/api/v1/connections/{hs}/syncs", 202, json={})
        chosen = {"action": "sync_now", "_selected_action": [sf], "index": "0"}
        member.post(reverse("admin:integrations_connection_changelist"), chosen, follow=True)
        _wait(
            "the syncs done",
            lambda: (
                SyncRun.objects.filter(connection__organization=org).exists()
                and not SyncRun.objects.filter(
                    connection__organization=org, status__in=[SyncStatus.QUEUED, SyncStatus.RUNNING]
                ).exists()
            ),
            procs,
            timeout=90,
        )
        assert set(SyncRun.objects.values_list("status", flat=True)) == {SyncStatus.SUCCEEDED}

        # 5. Refreshes: expired at the provider (a 401, then the refresh), about to expire,
        # and forced from the admin; Salesforce's session ended (INVALID_SESSION_ID).
        contact_url = f"/api/v1/connections/{hs}/contacts/{contact['id']}"
        sandbox.expire_tokens()
        remote.data("GET", contact_url)
        Connection.objects.filter(pk=hs).update(token_expires_at=timezone.now())
        remote.data("GET", contact_url)
        assert local_api.api("GET", contact_url).status_code == 200  # HubSpot's SDK, here
        sandbox.sf_expire_tokens()
        sf_contact_url = f"/api/v1/connections/{sf}/contacts/{sf_contact.json()['data']['id']}"
        assert local_api.api("GET", sf_contact_url).status_code == 200
        remote.data("POST", f"/api/v1/connections/{hs}/test")  # the identity read, in uvicorn
        for action in ("refresh_token_now", "test_connection"):
            chosen = {"action": action, "_selected_action": [hs, sf], "index": "0"}
            page = member.post(
                reverse("admin:integrations_connection_changelist"), chosen, follow=True
            )
            assert page.status_code == 200

        # 6. A workflow run to an approval, approved in the admin, written by the worker.
        run = remote.data(
            "POST",
            "/api/v1/workflows/lead_qualification/runs",
            202,
            json={"input": {"contact_id": contact["id"]}, "connection_id": hs},
        )
        run_row = WorkflowRun.objects.get(pk=run["id"])

        def status() -> str:
            run_row.refresh_from_db()
            return str(run_row.status)

        _wait("waiting for approval", lambda: status() == RunStatus.WAITING_APPROVAL, procs)
        approval = Approval.objects.get(run=run_row)
        decided = member.post(
            reverse("admin:workflows_workflowrun_decide", args=[run_row.pk, approval.pk]),
            {"decision": "approve", "comment": "fine"},
        )
        assert decided.status_code == 302
        _wait("the run done", lambda: status() == RunStatus.SUCCEEDED, procs, timeout=90)
        again = remote.call("POST", f"/api/v1/approvals/{approval.pk}/approve", json={})
        assert again.status_code >= 400  # decided already

        # 7. Failures on purpose.
        access = Connection.objects.get(pk=hs).access_token
        sandbox.faults(fail_next=1, fail_status=500)
        assert remote.call("GET", contact_url).status_code >= 500  # the provider's 500
        wrong = [
            "sbk_AAAAAAAA_" + "x" * 43,  # unknown prefix
            first_key[:-4] + "abcd",  # a real prefix, a wrong secret
            str(access),  # a provider token offered as an API key
            "not-a-key",
        ]
        for bad_key in wrong:
            assert remote.call("GET", "/api/v1/me", key=bad_key).status_code == 401
        key_id = ApiKey.objects.get(organization=org, name="first").pk
        remote.data("DELETE", f"/api/v1/api-keys/{key_id}")
        assert remote.call("GET", "/api/v1/me", key=first_key).status_code == 401  # revoked
        # Validation errors around a real token: nothing of the request is echoed.
        for body in (
            {"name": {"nested": str(access)}, "employees": str(access)},
            {"name": "x", "domain": ["list"], "industry": str(access), "bogus": 1},
        ):
            bad = remote.call("POST", f"/api/v1/connections/{hs}/companies", json=body)
            assert bad.status_code == 422, bad.text
        assert (
            local_api.api(
                "POST", f"/api/v1/connections/{sf}/contacts", {"email": [str(access)]}
            ).status_code
            == 422
        )
        raw = b'{"email": "' + str(access).encode() + b'", '
        assert remote.call("POST", f"/api/v1/connections/{hs}/contacts", raw=raw).status_code == 400
        assert (
            remote.call("GET", f"/api/v1/connections/{hs}/records?object={access}").status_code
            == 422
        )
        # The provider refuses a value (and says which): a token-looking value, not a secret.
        lookalike = "C" + uuid.uuid4().hex * 3
        refused = remote.call("PATCH", contact_url, json={"email": lookalike})
        assert refused.status_code == 422, refused.text
        # Encrypted tokens no key opens (a botched key rotation): unhandled errors, 500s, in
        # the API and on the wizard's page opened with the connect-session link.
        with db.cursor() as cursor:
            cursor.execute("SELECT id, access_token FROM integrations_connection")
            ciphertexts = cursor.fetchall()
            cursor.execute(
                "UPDATE integrations_connection SET access_token = %s", ["gAAAAAB" + "A" * 100]
            )
        assert remote.call("GET", f"/api/v1/connections/{sf}").status_code == 500
        assert remote.call("GET", f"/api/v1/connections/{sf}/contacts").status_code == 500
        on_link = f"/connect/?session={session_token}"
        broken = wizard.call("GET", on_link, key=None)
        assert broken.status_code in (200, 500), broken.text
        with db.cursor() as cursor:
            for pk, ciphertext in ciphertexts:
                cursor.execute(
                    "UPDATE integrations_connection SET access_token = %s WHERE id = %s",
                    [ciphertext, pk],
                )
        # The grant revoked at the provider: the refresh is refused, the connection needs
        # reauth; HubSpot through uvicorn, Salesforce here.
        sandbox.revoke_tokens()
        assert remote.call("GET", contact_url).json()["error"]["code"] == "reauth_required"
        sandbox.sf_revoke_tokens()
        refused_sf = orjson.loads(local_api.api("GET", sf_contact_url).content)
        assert refused_sf["error"]["code"] == "reauth_required"
        assert set(Connection.objects.values_list("status", flat=True)) == {
            ConnectionStatus.NEEDS_REAUTH
        }
        # Reconnect HubSpot as the member (the identity read happens in this process).
        begun = member.get("/connect/hubspot/start")
        redirect = hubspot_consent(capture, begun["Location"])
        secrets.add("authorization code", code_of(redirect))
        back = urlsplit(redirect)
        assert member.get(f"{back.path}?{back.query}").status_code == 200
        remote.data("GET", contact_url)

        # 8. What operators and integrators read: every admin page, the OpenAPI document.
        pages = crawl_admin(member)
        assert remote.call("GET", "/api/v1/openapi.json").status_code == 200
        assert local_api.get("/api/v1/openapi.json").status_code == 200
        remote.call("GET", "/api/v1/docs")

        # 9. Disconnect: HubSpot from the admin (revoked here), Salesforce through the API.
        chosen = {"action": "disconnect", "_selected_action": [hs], "index": "0"}
        member.post(reverse("admin:integrations_connection_changelist"), chosen, follow=True)
        remote.call("DELETE", f"/api/v1/connections/{sf}")
        pages += crawl_admin(member)

        # Canaries: lines the scan must see in each process's log.
        canary = f"canary-{uuid.uuid4().hex}"
        remote.call("GET", f"/api/v1/{canary}")
        celery_app.send_task("integrations.outbox.send", args=[[]], queue=queue, task_id=canary)
        _wait("the worker took the canary", lambda: canary in worker.log.read_text(), procs)
    finally:
        remote.close()
        wizard.close()
        for proc in procs:
            stop(proc.proc, grace=20)
        capture.stop()

    # Every secret this flow made or used.
    with capture.paused():
        for provider in ("hubspot", "salesforce"):
            issued = sandbox.issued_tokens(provider)
            for token in issued["access"]:
                secrets.add(f"{provider} access token", token)
            for token in issued["refresh"]:
                secrets.add(f"{provider} refresh token", token)
    for provider in ("hubspot", "salesforce"):
        secrets.add(f"{provider} client secret", s.PROVIDERS[provider]["client_secret"])
    for key in django_settings.FIELD_ENCRYPTION_KEYS:
        secrets.add("field encryption key", key)
    secrets.add("SECRET_KEY", django_settings.SECRET_KEY)
    kinds = secrets.kinds()
    assert kinds["hubspot access token"] >= 5, kinds  # connect, refreshes, reconnect
    assert kinds["hubspot refresh token"] >= 2, kinds
    assert kinds["salesforce access token"] >= 2, kinds

    # Where the scan looks.
    out = capfd.readouterr()
    sources: dict[str, str] = {
        "this process's logs": capture.text(),
        "this process's stdout/stderr": out.out + out.err,
        "uvicorn's output": web.log.read_text(errors="replace"),
        "the worker's output": worker.log.read_text(errors="replace"),
    }
    # The capture is live: DEBUG lines of the HTTP libraries and SQL with its parameters.
    for name in ("urllib3.connectionpool", "django.db.backends", "switchboard.tokens"):
        assert capture.by_logger[name] > 0, (name, capture.by_logger.most_common(30))
    assert capture.by_level["DEBUG"] > 0
    for name in ("uvicorn's output", "the worker's output"):
        for logger in ("urllib3.connectionpool", "hubspot.crm.objects.rest", "switchboard"):
            assert f'"logger":"{logger}' in sources[name], (name, logger)
    assert canary in sources["uvicorn's output"]
    assert canary in sources["the worker's output"]
    assert sandbox.hubspot_webhook_status()["delivered"] > 0

    if dump := os.environ.get("SECRETS_TEST_DUMP"):  # debugging aid: what was scanned
        for n, text in enumerate(sources.values()):
            Path(dump, f"source-{n}.txt").write_text(text)
    findings: list[Finding] = []
    for source, text in sources.items():
        findings += secrets.scan(source, text)
    for answer in seen.answers:
        findings += secrets.scan(
            f"{answer.source} ({answer.status})", answer.body, exclude=answer.issued
        )
    errors = seen.errors()
    assert len(errors) >= 15, [(e.source, e.status) for e in errors]
    assert pages >= 100
    elapsed = time.monotonic() - started
    print(
        f"\nsecrets: {dict(kinds)}; needles: {sum(1 for _ in secrets.needles())}; "
        f"log lines here: {len(capture.lines)}; answers: {len(seen.answers)} "
        f"({len(errors)} errors); admin pages: {pages}; {elapsed:.0f} s"
    )
    assert not findings, "secrets leaked:\n" + "\n".join(str(f) for f in findings[:40])


# --- the scan itself can fail -------------------------------------------------------------


def test_the_scan_finds_a_secret_in_every_form_it_claims() -> None:
    token = "C" + "Zm9vYmFyYmF6cXV4" * 6  # token-shaped
    secrets = Secrets(public={"sandbox-hubspot-client"})
    secrets.add("access token", token)
    secrets.add("client secret", "sandbox-hubspot-secret")
    for form, needle in needles_of(token).items():
        assert secrets.scan("text", f"before {needle} after"), form
    import base64

    basic = base64.b64encode(b"sandbox-hubspot-client:sandbox-hubspot-secret").decode()
    assert secrets.scan("header", f"Authorization: Basic {basic}")
    embedded = base64.b64encode(b'{"refresh": "x", "access": "' + token.encode() + b'"}')
    assert secrets.scan("blob", embedded.decode())
    assert secrets.scan("truncated", f"token={token[:80]}...")
    # A public value sharing the secret's start is no finding.
    assert not secrets.scan("page", "client_id=sandbox-hubspot-client")
    assert not secrets.scan("page", "nothing here")
