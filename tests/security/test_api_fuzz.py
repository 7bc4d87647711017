"""Schemathesis against the running API: every operation of ``/api/v1/openapi.json``.

Switchboard runs under uvicorn (``asgi_server``) on this test's PostgreSQL database, with every
provider pointed at the sandbox process. Before the fuzzer starts, real objects are made so the
ids operations take exist: an organisation with an API key (the fuzzer's) and a second key to
revoke, a HubSpot connection made through the sandbox's token endpoint and a second one (to
disconnect, and lacking most scopes, so HubSpot refuses its company and deal calls), contacts,
companies and deals at the provider and in the mirror, a succeeded and a failed write (through
the API), sync runs, workflow runs (queued, cancelled, and three waiting for approval), their
approvals, and a webhook event.

Schemathesis then runs its phases over every operation, authenticated with
``Authorization: Bearer <key>``: examples, coverage (boundary and invalid values, other
methods), fuzzing (Hypothesis; half of the generated path parameters are replaced by seeded ids,
and ids seen in earlier responses are reused) and stateful sequences (links inferred from
``Location`` headers and from the ids responses carry). Every response must:

- not be a server error (5xx), except 502 ``provider_error``: HubSpot refusing the calls of
  the second connection (the designed answer, documented where a provider is called);
- have a status code the operation documents;
- have the documented content type, and a body that conforms to the documented schema (each
  event of the run event stream too);
- be the envelope: a JSON object of exactly ``success``, ``data``, ``error`` and ``meta``, with
  ``error.code`` (one of ``core.errors.ErrorCode``) and ``error.message`` when ``success`` is
  false, ``error`` null when it is true, ``success`` matching the status, and
  ``meta.request_id`` equal to the ``X-Request-ID`` header (the run's event stream answers
  ``text/event-stream`` on 200 and is checked as such).

Destructive operations cannot cut the run short: ``DELETE /api-keys/{key_id}`` and
``DELETE /connections/{connection_id}`` are offered only the second key and the second
connection, and a ``before_call`` hook rewrites any request aimed at the fuzzer's own key or the
main connection (an id it read from a list, say) to aim at those instead, just before it is sent.

Bounded for CI: a fixed seed, ``FUZZ_EXAMPLES`` examples per operation in the fuzzing phase
(default 12), ``FUZZ_STEPS`` steps per stateful scenario (default 6), ``FUZZ_WORKERS`` threads
(default 4); about a minute on two cores (the generated inputs are fixed by the seed; which
answers they meet can vary with the order the workers send them in). For a deeper local run,
raise them and pick other seeds; ``FUZZ_CHECKS=all`` adds every other check schemathesis has
(positive data acceptance and the like: a survey, many of whose findings are constraints a schema
cannot state), ``FUZZ_VERBOSE=1`` prints one answer of each operation and status::

    FUZZ_EXAMPLES=200 FUZZ_STEPS=20 FUZZ_SEED=7 .venv/bin/pytest tests/security/test_api_fuzz.py -s

A failure lists every distinct problem found (operation, check, message) with a curl command that
reproduces it (schemathesis filters the key out of it: add ``-H "Authorization: Bearer $KEY"``).
"""

from __future__ import annotations

import ast
import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
import schemathesis
from asgiref.sync import async_to_sync
from hypothesis import strategies as st
from schemathesis.checks import CHECKS
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events
from schemathesis.hooks import GLOBAL_HOOK_DISPATCHER

from accounts.audit import Actor
from accounts.models import ApiKey, Organization
from accounts.services import api_key_create
from core.errors import ErrorCode
from integrations.models import Connection, WebhookEvent
from integrations.providers.unified import CompanyIn, ContactIn, DealIn, RecordIn
from integrations.services.calls import crm_client_for
from integrations.sync.mirror import mirror_upsert
from tests.conftest import LiveServer
from tests.integrations.test_tokens import make_connection
from tests.sandbox_fixtures import ACME_HUB_ID, GLOBEX_HUB_ID
from tests.workers import drop_queues
from workflows.models import Approval, RunStatus, Workflow, WorkflowRun
from workflows.services import workflow_ensure_defaults

pytestmark = pytest.mark.live

FUZZ_SEED = int(os.environ.get("FUZZ_SEED", "20240611"))
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))
FUZZ_STEPS = int(os.environ.get("FUZZ_STEPS", "6"))
FUZZ_WORKERS = int(os.environ.get("FUZZ_WORKERS", "4"))
FUZZ_CHECKS = os.environ.get("FUZZ_CHECKS", "")
ACTOR = Actor(label="fuzz")
PREFIX = "/api/v1"
ENVELOPE_KEYS = {"success", "data", "error", "meta"}
ERROR_CODES = {code.value for code in ErrorCode}
PLURALS = {"contact": "contacts", "company": "companies", "deal": "deals"}


@pytest.fixture
def queues() -> Iterator[dict[str, str]]:
    """Queues of this test's own (the server enqueues outbox sends, syncs and runs; no worker
    consumes them), dropped from Redis at the end with the sync queue's leftovers."""
    if not os.environ.get("REDIS_URL") or not os.environ.get("DATABASE_URL"):
        pytest.skip("the API fuzz test needs PostgreSQL (DATABASE_URL) and Redis (REDIS_URL)")
    suffix = uuid.uuid4().hex[:12]
    names = {"OUTBOX_QUEUE": f"fuzz-writes-{suffix}", "WORKFLOW_QUEUE": f"fuzz-runs-{suffix}"}
    yield names
    drop_queues(*names.values(), "sync")


@pytest.fixture
def asgi_env(sandbox: Any, queues: dict[str, str]) -> dict[str, str]:
    """The server on the sandbox, with budgets that never make a call wait (the fuzzer sends
    hundreds of provider calls a minute; rate limiting is tested elsewhere)."""
    return {
        "SWITCHBOARD_SANDBOX_URL": sandbox.url,
        "SWITCHBOARD_SANDBOX_CA_FILE": sandbox.ca_file,
        "RATE_LIMIT_OVERRIDES": "hubspot.ten_secondly_rolling=100000,hubspot.daily=10000000",
        "RATE_LIMIT_PACE_SECONDS": "0",
        "API_THROTTLE_AUTH_RATE": "100000/m",
        "API_THROTTLE_IP_RATE": "100000/m",
        "PROVIDER_TIMEOUT_SECONDS": "5",
        "OUTBOX_INLINE_SECONDS": "5",
        "OUTBOX_MAX_ATTEMPTS": "1",
        **queues,
    }


# --- the seeded objects ---------------------------------------------------------------------------


@dataclass
class Seeded:
    """Ids of real objects, by path parameter, and the two the fuzzer may destroy."""

    key: str
    own_key_id: str
    spare_key_id: str
    connection_id: str
    spare_connection_id: str
    records: dict[str, list[str]] = field(default_factory=dict)  # plural -> provider ids
    write_ids: list[str] = field(default_factory=list)
    sync_run_ids: list[str] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    approval_ids: list[str] = field(default_factory=list)
    workflow_keys: list[str] = field(default_factory=list)

    def path_values(self, method: str, path: str) -> dict[str, list[str]]:
        """Seeded values for each path parameter of one operation."""
        values: dict[str, list[str]] = {
            "key_id": [self.spare_key_id],
            # The second connection lacks most scopes: HubSpot refuses its company and deal
            # calls (provider_error).
            "connection_id": [self.connection_id, self.connection_id, self.spare_connection_id],
            "write_id": self.write_ids,
            "approval_id": self.approval_ids,
            "key": self.workflow_keys,
            "run_id": self.sync_run_ids if "/syncs/" in path else self.run_ids,
            "to_plural": list(PLURALS.values()),
        }
        if method == "DELETE" and path.endswith("/connections/{connection_id}"):
            values["connection_id"] = [self.spare_connection_id]
        plural = next((p for p in PLURALS.values() if f"/{p}/" in path), None)
        if plural is not None:
            values["record_id"] = self.records[plural]
            values["to_id"] = [i for ids in self.records.values() for i in ids]
        return values


def _connection(
    org: Organization, sandbox: Any, hub_id: int, scopes: list[str] | None = None
) -> Connection:
    return make_connection(
        sandbox, org, expires_in=3600, hub_id=hub_id, display_name=f"hub {hub_id}", scopes=scopes
    )


def _create(connection: Connection, kind: str, data: RecordIn) -> str:
    """A record at the provider, and in the mirror as a sync would have put it."""
    client = crm_client_for(connection)
    record = async_to_sync(client.create)(kind, data).unwrap()  # type: ignore[arg-type]
    mirror_upsert(connection_id=connection.pk, object_type=kind, records=[record])  # type: ignore[arg-type]
    return str(record.id)


def _waiting_approval(workflow: Workflow, connection: Connection, contact: str) -> Approval:
    """A run of ``workflow`` paused for a person's approval of one contact update."""
    run_id = uuid.uuid4()
    run = WorkflowRun.objects.create(
        id=run_id,
        thread_id=str(run_id),  # the checkpointer's thread is the run (as run_start makes it)
        organization_id=workflow.organization_id,
        workflow=workflow,
        connection=connection,
        graph=workflow.graph,
        trigger="api",
        input={"contact_id": contact},
        status=RunStatus.WAITING_APPROVAL,
    )
    change = {"field": "lifecycle_stage", "before": "lead", "after": "customer"}
    return Approval.objects.create(
        run=run,
        organization_id=workflow.organization_id,
        interrupt_id=uuid.uuid4().hex,
        summary="Move the contact on.",
        proposal=[{"operation": "update", "object_type": "contact", "record_id": contact}],
        diff=[
            {
                "index": 0,
                "operation": "update",
                "object_type": "contact",
                "record_id": contact,
                "changes": [change],
            }
        ],
    )


def _ok(response: httpx.Response, *statuses: int) -> Any:
    assert response.status_code in statuses, f"{response.status_code}: {response.text}"
    return response.json()["data"]


def seed(org: Organization, sandbox: Any, server: LiveServer) -> Seeded:
    own = api_key_create(organization_id=org.pk, name="fuzzer", created_by_id=None, actor=ACTOR)
    spare = api_key_create(
        organization_id=org.pk, name="to revoke", created_by_id=None, actor=ACTOR
    )
    main = _connection(org, sandbox, ACME_HUB_ID)
    doomed = _connection(org, sandbox, GLOBEX_HUB_ID, scopes=["oauth", "crm.objects.contacts.read"])
    company = _create(main, "company", CompanyIn(name="Initech", domain="initech.example.com"))
    records = {
        "companies": [
            company,
            _create(main, "company", CompanyIn(name="Globex", domain="globex.example.com")),
        ],
        "contacts": [
            _create(
                main, "contact", ContactIn(email=f"pat{i}@initech.example.com", company_id=company)
            )
            for i in range(2)
        ],
        "deals": [_create(main, "deal", DealIn(name="Initech renewal", company_id=company))],
    }
    seeded = Seeded(
        key=own.secret,
        own_key_id=str(own.api_key.pk),
        spare_key_id=str(spare.api_key.pk),
        connection_id=str(main.pk),
        spare_connection_id=str(doomed.pk),
        records=records,
    )
    headers = {"Authorization": f"Bearer {own.secret}"}
    base = f"{PREFIX}/connections/{main.pk}"
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as http:
        # Writes: one that succeeded, one the provider refused (a duplicate email: failed,
        # so it can be replayed).
        written = http.post(f"{base}/contacts", json={"email": "fuzz-seed@initech.example.com"})
        _ok(written, 201)
        refused = http.post(f"{base}/contacts", json={"email": "pat0@initech.example.com"})
        assert refused.status_code == 409, refused.text
        seeded.write_ids = [w["id"] for w in _ok(http.get(f"{PREFIX}/writes"), 200)]
        # Syncs (queued: no worker runs them).
        runs = _ok(http.post(f"{base}/syncs", json={}), 202)
        seeded.sync_run_ids = [r["id"] for r in runs]
        # Workflow runs: one queued, one cancelled (it can be retried).
        contact = records["contacts"][0]
        body = {"input": {"contact_id": contact}, "connection_id": str(main.pk)}
        queued = _ok(http.post(f"{PREFIX}/workflows/lead_qualification/runs", json=body), 202)
        body = {"connection_id": str(main.pk)}
        cancelled = _ok(http.post(f"{PREFIX}/workflows/deal_followup/runs", json=body), 202)
        _ok(http.post(f"{PREFIX}/runs/{cancelled['id']}/cancel"), 200)
    # Runs waiting for a person's approval of one write (three: a decision is final, and
    # both approve and reject should meet a pending one).
    workflow = Workflow.objects.get(organization=org, key="lead_qualification")
    approvals = [_waiting_approval(workflow, main, contact) for _ in range(3)]
    seeded.run_ids = [queued["id"], cancelled["id"], *(str(a.run_id) for a in approvals)]
    seeded.approval_ids = [str(a.pk) for a in approvals]
    seeded.workflow_keys = [w.key for w in workflow_ensure_defaults(org)]
    event = WebhookEvent.objects.create(
        provider="hubspot",
        event_id=f"{ACME_HUB_ID}:1",
        external_account_id=str(ACME_HUB_ID),
        subscription_type="contact.creation",
        object_type="contact",
        object_id=contact,
        payload={"objectId": int(contact), "subscriptionType": "contact.creation"},
        status="processed",
    )
    event.connections.add(main)
    return seeded


# --- checks and hooks ---------------------------------------------------------------------------


def _header(response: Any, name: str) -> str | None:
    values = response.headers.get(name.lower())
    return values[0] if values else None


def switchboard_envelope(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every answer is the envelope, its request id the ``X-Request-ID`` header."""
    content_type = _header(response, "content-type") or ""
    request_id = _header(response, "x-request-id")
    assert request_id, "no X-Request-ID header"
    if response.status_code == 200 and content_type.startswith("text/event-stream"):
        return None  # the run's event stream
    assert content_type.startswith("application/json"), f"not JSON: {content_type!r}"
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise AssertionError("the body is not JSON") from None
    assert isinstance(body, dict), "the body is not a JSON object"
    assert set(body) == ENVELOPE_KEYS, f"not the envelope: keys {sorted(body)}"
    assert isinstance(body["success"], bool), "success is not a boolean"
    assert body["success"] is (response.status_code < 400), (
        f"success is {body['success']} on a {response.status_code}"
    )
    meta = body["meta"]
    assert isinstance(meta, dict), "meta is not an object"
    assert meta.get("request_id") == request_id, (
        f"meta.request_id {meta.get('request_id')!r} is not X-Request-ID {request_id!r}"
    )
    if body["success"]:
        assert body["error"] is None, "error is set on a success"
        return None
    error = body["error"]
    assert isinstance(error, dict), "error is not an object on a failure"
    assert error.get("code") in ERROR_CODES, f"error.code {error.get('code')!r} is not a known code"
    if response.status_code == 502:
        assert error["code"] == "provider_error", f"a 502 with code {error['code']!r}"
    assert isinstance(error.get("message"), str), "error.message is missing"
    assert error["message"], "error.message is empty"
    return None


@dataclass(frozen=True)
class Finding:
    operation: str
    check: str
    title: str
    message: str
    reproduce: str

    def render(self, key: str) -> str:
        curl = self.reproduce.replace(key, "$SWITCHBOARD_KEY")
        message = self.message if len(self.message) < 1500 else self.message[:1500] + " …"
        return f"{self.operation} [{self.check}] {self.title}\n{message}\n    {curl}"


@dataclass
class Tally:
    cases: int = 0
    by_phase: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, set[int]] = field(default_factory=dict)
    samples: dict[tuple[str, int], str] = field(default_factory=dict)
    findings: dict[tuple[str, str, str], Finding] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    started: dict[str, float] = field(default_factory=dict)
    links: int = 0  # the transitions (links) the stateful phase found or inferred
    seconds: dict[str, float] = field(default_factory=dict)

    def event(self, event: Any) -> None:
        if isinstance(event, events.PhaseStarted):
            self.started[str(event.phase.name)] = event.timestamp
            if isinstance(event.payload, events.StatefulPhasePayload):
                self.links = event.payload.transitions_total
        elif isinstance(event, events.PhaseFinished) and str(event.phase.name) in self.started:
            name = str(event.phase.name)
            self.seconds[name] = event.timestamp - self.started[name]
        elif isinstance(event, events.ScenarioFinished):
            self.scenario(str(event.phase), event.recorder)
        elif isinstance(event, events.NonFatalError):
            self.errors.append(f"{event.label}: {event.info.title}: {event.info.message}")
        elif isinstance(event, events.FatalError):
            self.errors.append(f"fatal: {event.exception!r}")

    def scenario(self, phase: str, recorder: Any) -> None:
        self.cases += len(recorder.cases)
        self.by_phase[phase] = self.by_phase.get(phase, 0) + len(recorder.cases)
        for case_id, node in recorder.cases.items():
            interaction = recorder.interactions.get(case_id)
            if interaction is not None and interaction.response is not None:
                label = node.value.operation.label
                status = interaction.response.status_code
                self.statuses.setdefault(label, set()).add(status)
                if (label, status) not in self.samples:
                    request = interaction.request
                    body = request.body or b""
                    self.samples[(label, status)] = (
                        f"{request.uri} {body[:300]!r} -> {interaction.response.content[:400]!r}"
                    )
        for case_id, checks in recorder.checks.items():
            for check in checks:
                if check.status != Status.FAILURE or check.failure_info is None:
                    continue
                failure = check.failure_info.failure
                node = recorder.cases.get(case_id)
                operation = node.value.operation.label if node else (failure.operation or "?")
                key = (operation, check.name, failure.title)
                if key not in self.findings:
                    self.findings[key] = Finding(
                        operation=operation,
                        check=check.name,
                        title=failure.title,
                        message=failure.message,
                        reproduce=check.failure_info.code_sample,
                    )


@contextmanager
def one_ast_parse_at_a_time() -> Iterator[None]:
    """Hypothesis reads lambdas' source with ``ast.parse``; on Python 3.11, parsing in two
    threads at once can fail with "AST constructor recursion depth mismatch" (CPython
    gh-106905), and the fuzzer's workers are threads."""
    lock = threading.Lock()
    parse = ast.parse

    def serialized(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return parse(*args, **kwargs)

    ast.parse = serialized
    try:
        yield
    finally:
        ast.parse = parse


def fuzz_config(server: LiveServer, key: str) -> SchemathesisConfig:
    checks = {
        # FUZZ_CHECKS=all adds every other check schemathesis has (a survey, not a gate).
        "enabled": FUZZ_CHECKS == "all",
        # 502 provider_error is HubSpot refusing the second connection's calls (it lacks the
        # scopes): the designed answer, checked by switchboard_envelope. Any other 5xx fails.
        "not_a_server_error": {"enabled": True, "expected-statuses": ["2xx", "3xx", "4xx", "502"]},
        "status_code_conformance": {"enabled": True},
        "content_type_conformance": {"enabled": True},
        "response_schema_conformance": {"enabled": True},
        "switchboard_envelope": {"enabled": True},
    }
    generation = {"max-examples": FUZZ_EXAMPLES, "database": "none", "mode": "all"}
    return SchemathesisConfig.from_dict(
        {
            "seed": FUZZ_SEED,
            "base-url": server.url,
            "headers": {"Authorization": f"Bearer {key}"},
            "workers": FUZZ_WORKERS,
            "request-timeout": 15,
            "max-stream-events": 1,
            "suppress-health-check": ["all"],
            "cache": {"enabled": False},
            "generation": generation,
            "checks": checks,
            "phases": {
                "fuzzing": {"extra-data-sources": {"responses": True}},
                "stateful": {
                    "max-steps": FUZZ_STEPS,
                    "inference": {"algorithms": ["location-headers", "dependency-analysis"]},
                },
            },
        }
    )


def test_every_operation_survives_the_fuzzer(
    sandbox: Any, sandbox_settings: Any, asgi_server: LiveServer, queues: dict[str, str]
) -> None:
    sandbox.limits(per_10s=100000, daily=10000000, search_per_second=0)
    org = Organization.objects.create(name="Fuzz", slug=f"fuzz-{uuid.uuid4().hex[:8]}")
    seeded = seed(org, sandbox, asgi_server)

    schema = schemathesis.openapi.from_url(
        f"{asgi_server.url}{PREFIX}/openapi.json", config=fuzz_config(asgi_server, seeded.key)
    )

    @schema.hook
    def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> Any:
        """Half the time, every path parameter is a seeded id (so operations get past 404)."""
        operation = context.operation
        values = seeded.path_values(operation.method.upper(), operation.path)
        if not path_parameters or any(not values.get(name) for name in path_parameters):
            return st.just(path_parameters)
        real = st.fixed_dictionaries(
            {name: st.sampled_from(values[name]) for name in path_parameters}
        )
        return st.one_of(st.just(path_parameters), real)

    def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
        """Never revoke the fuzzer's key or disconnect the main connection."""
        if case.method.upper() != "DELETE" or not case.path_parameters:
            return
        params = case.path_parameters
        if case.path.endswith("/api-keys/{key_id}") and _same_id(
            params.get("key_id"), seeded.own_key_id
        ):
            params["key_id"] = seeded.spare_key_id
        if case.path.endswith("/connections/{connection_id}") and _same_id(
            params.get("connection_id"), seeded.connection_id
        ):
            params["connection_id"] = seeded.spare_connection_id

    schemathesis.check(switchboard_envelope)
    GLOBAL_HOOK_DISPATCHER.register_hook_with_name(before_call, "before_call")
    tally = Tally()
    try:
        with one_ast_parse_at_a_time():
            for event in schemathesis.engine.from_schema(schema).execute():
                tally.event(event)
    finally:
        GLOBAL_HOOK_DISPATCHER.unregister(before_call)
        CHECKS.unregister("switchboard_envelope")

    operations = {op.label for op in _operations(schema)}
    report = _report(tally, operations, seeded.key)
    print(report)
    assert ApiKey.objects.get(pk=seeded.own_key_id).revoked_at is None
    assert Connection.objects.filter(pk=seeded.connection_id).exists()
    assert not tally.errors, report
    assert not tally.findings, report


def _same_id(value: Any, wanted: str) -> bool:
    try:
        return uuid.UUID(str(value)) == uuid.UUID(wanted)
    except ValueError:
        return False


def _operations(schema: Any) -> list[Any]:
    return [result.ok() for result in schema.get_all_operations()]


def _report(tally: Tally, operations: set[str], key: str) -> str:
    lines = [f"schemathesis: {tally.cases} cases over {len(operations)} operations"]
    lines += [
        f"  {phase}: {count} cases, {tally.seconds.get(phase, 0):.1f} s"
        for phase, count in sorted(tally.by_phase.items())
    ]
    lines.append(f"links between operations (stateful): {tally.links}")
    answered = {
        op for op in operations if any(200 <= s < 300 for s in tally.statuses.get(op, set()))
    }
    lines.append(f"operations answering 2xx at least once: {len(answered)}")
    for op in sorted(operations - answered):
        lines.append(f"  never 2xx: {op} {sorted(tally.statuses.get(op, set()))}")
    for finding in sorted(tally.findings.values(), key=lambda f: (f.operation, f.check)):
        lines.append("")
        lines.append(finding.render(key))
    lines += [f"error: {error}" for error in tally.errors]
    if os.environ.get("FUZZ_VERBOSE"):
        lines += ["", "one answer of each operation and status:"]
        lines += [
            f"{op} {status}: {sample}" for (op, status), sample in sorted(tally.samples.items())
        ]
    return "\n".join(lines)
