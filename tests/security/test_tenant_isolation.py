"""Tenant isolation, generated from the routes themselves.

Every operation of the Ninja API (read from its OpenAPI document) is called with the second
organisation's credentials (an API key, a signed-in owner and a signed-in member, with their
CSRF token) against the first organisation's objects: every path parameter is filled from
``object_ids`` (a route with a parameter it does not know fails the test, naming it), every
body is built from the operation's request schema. Each answer is a 404 ``not_found`` (so the
body passed validation: a bad one would be a 422); a route without an object in its path must
not show the first organisation's data even when its filters name that data; and afterwards no
row outside the second organisation changed, no Celery message went out and the provider
sandbox saw no call. The same walk with a revoked key, a made-up key and a connect-session token
is a 401. Every other pattern of the URL conf (the connect wizard, webhooks, sign-in pages) is
walked too, and must be classified here; the admin's are walked by test_admin_scoping.py.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import jwt
import orjson
import pytest
from django.conf import settings
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from accounts.connect_sessions import ALGORITHM, AUDIENCE, ISSUER, EndUser, connect_session_issue
from accounts.models import Organization
from config.api import api
from integrations.models import AttemptStatus, Connection, OAuthAttempt
from tests.conftest import assert_envelope_error
from tests.security.conftest import (
    ACTOR,
    Tenant,
    Tenants,
    assert_unchanged,
    outside_of,
)
from workflows.models import Workflow, WorkflowRun

API = "/api/v1"

# Query and header parameters that name no object: left out of the walk. A parameter neither
# here nor in ``object_ids`` fails the walk, so a new filter that names an object (say
# ``?workflow_id=``) has to be added there and is then checked like the others.
NOT_AN_OBJECT = frozenset(
    {
        "limit",
        "cursor",
        "offset",
        "status",
        "operation",
        "batch",
        "subscription_type",
        "graph",
        "trigger",
        "created_after",
        "created_before",
        "updated_since",
        "include_deleted",
        "archived",
        "kind",
        "Idempotency-Key",
        "Last-Event-ID",
        "last_event_id",
    }
)

# Bodies the request schema cannot describe whole (a rule checked in the view, before the
# object is looked up): keyed by operation id. Each must name a real operation.
BODY_EXAMPLES: dict[str, Any] = {
    f"{plural}_batch": {"create": []} for plural in ("contacts", "companies", "deals")
}


def object_ids(t: Tenant) -> dict[str, Any]:
    """The tenant's real objects, by the name of the parameter that carries them. A dict value
    is keyed by the nearest path segment before the parameter that it names (``/syncs/{run_id}``
    or ``/runs/{run_id}``; ``/contacts/{record_id}``)."""
    return {
        "key_id": t.api_key.pk,
        "connection_id": t.connection.pk,
        "record_id": {
            plural: t.records[kind].external_id
            for kind, plural in (
                ("contact", "contacts"),
                ("company", "companies"),
                ("deal", "deals"),
            )
        },
        "to_plural": {"contacts": "companies", "companies": "contacts", "deals": "contacts"},
        "to_id": {
            "contacts": t.records["company"].external_id,
            "companies": t.records["contact"].external_id,
            "deals": t.records["contact"].external_id,
        },
        "write_id": t.write.pk,
        "run_id": {"syncs": t.sync_run.pk, "runs": t.run.pk, "approvals": t.run.pk},
        "key": t.workflow.key,
        "workflow": t.workflow.key,
        "approval_id": t.approval.pk,
        "object": "contact",
        "object_id": t.records["contact"].external_id,
    }


# Entries of ``object_ids`` that name a type of object, not an object.
OBJECT_TYPES = frozenset({"object", "to_plural"})


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    parameters: tuple[dict[str, Any], ...]
    body: dict[str, Any] | None
    secured: bool

    @property
    def path_params(self) -> list[str]:
        return [p["name"] for p in self.parameters if p["in"] == "path"]

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def openapi() -> dict[str, Any]:
    return dict(api.get_openapi_schema(path_prefix=f"{API}/"))


def operations() -> list[Operation]:
    found = []
    for path, methods in openapi()["paths"].items():
        for method, op in methods.items():
            content = (op.get("requestBody") or {}).get("content", {})
            found.append(
                Operation(
                    method=method.upper(),
                    path=path,
                    operation_id=op["operationId"],
                    parameters=tuple(op.get("parameters", [])),
                    body=content.get("application/json", {}).get("schema"),
                    secured=bool(op.get("security")),
                )
            )
    return found


def _segments_before(path: str, param: str) -> list[str]:
    """The static segments before ``{param}`` (all of them for a query parameter), nearest
    first."""
    head = path.split(f"{{{param}}}")[0]
    return [s for s in reversed(head.split("/")) if s and not s.startswith("{")]


def resolve(ids: dict[str, Any], path: str, name: str) -> Any:
    """The value of parameter ``name`` on ``path``; fails naming what the map lacks."""
    assert name in ids, f"{path}: parameter {name!r} is not in object_ids(): add the object"
    value = ids[name]
    if isinstance(value, dict):
        keys = [s for s in _segments_before(path, name) if s in value]
        assert keys, f"{path}: object_ids()[{name!r}] has no entry for this path"
        value = value[keys[0]]
    return str(value)


def example(schema: dict[str, Any], ids: dict[str, Any], path: str) -> Any:
    """A small valid instance of a JSON schema: required properties only, plus any property
    that names an object (filled with the target's)."""
    components = openapi()["components"]["schemas"]
    if "$ref" in schema:
        return example(components[schema["$ref"].rsplit("/", 1)[1]], ids, path)
    if "anyOf" in schema:
        options = [s for s in schema["anyOf"] if s.get("type") != "null"]
        return example(options[0], ids, path)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        body = {
            name: example(schema["properties"][name], ids, path)
            for name in schema.get("required", [])
        }
        for name in schema.get("properties", {}):
            if name in ids and name not in body:
                body[name] = resolve(ids, path, name)
        return body
    if kind == "array":
        return [example(schema["items"], ids, path) for _ in range(schema.get("minItems", 0))]
    if kind == "string":
        if schema.get("format") == "uuid":
            return str(uuid.uuid4())
        return "x" * max(1, schema.get("minLength", 1))
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    if kind == "boolean":
        return True
    raise AssertionError(f"{path}: no example for schema {schema}")


@dataclass(frozen=True)
class Caller:
    name: str
    client: Client
    headers: dict[str, str]


def key_caller(name: str, key: str) -> Caller:
    return Caller(name, Client(), {"Authorization": f"Bearer {key}"})


def session_caller(name: str, user: Any) -> Caller:
    """A browser signed in as ``user`` that sends its CSRF token, as the docs ask."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.get("/admin/login/")  # a page with a form: it sets the CSRF cookie
    token = client.cookies[settings.CSRF_COOKIE_NAME].value
    return Caller(name, client, {"X-CSRFToken": token})


@dataclass(frozen=True)
class Answer:
    response: Any
    sent: tuple[str, ...]  # the object references the request carried

    @property
    def status(self) -> int:
        return int(self.response.status_code)

    def text(self) -> str:
        """The body, without the references the caller sent (an error may echo them)."""
        body: str = self.response.content.decode()
        for value in self.sent:
            body = body.replace(value, "")
        return body


def request(
    caller: Caller, op: Operation, ids: dict[str, Any], body_ids: dict[str, Any] | None = None
) -> Answer:
    """Call ``op`` with its parameters from ``ids`` (and the objects its body names from
    ``body_ids``, when given)."""
    path_values = {name: resolve(ids, op.path, name) for name in op.path_params}
    url = op.path.format(**path_values)
    query: dict[str, str] = {}
    for param in op.parameters:
        name = param["name"]
        if param["in"] == "path":
            continue
        if name in ids:
            query[name] = resolve(ids, op.path, name)
        else:
            assert name in NOT_AN_OBJECT, f"{op}: parameter {name!r} in neither map"
            assert not param.get("required"), f"{op}: required parameter {name!r} has no value"
    if op.operation_id in BODY_EXAMPLES:
        body: Any = BODY_EXAMPLES[op.operation_id]
    else:
        body = example(op.body, body_ids or ids, op.path) if op.body is not None else None
    if query:
        url = f"{url}?{urlencode(query)}"
    data = orjson.dumps(body) if body is not None else b""
    response = caller.client.generic(
        op.method, url, data, content_type="application/json", headers=caller.headers
    )
    sent = [*path_values.values(), *query.values()]
    if isinstance(body, dict):
        sent += [str(v) for v in body.values() if isinstance(v, str)]
    return Answer(response, tuple(sent))


def leaked(body: str, t: Tenant, *, with_ids: bool) -> list[str]:
    return t.leaks(body, with_ids=with_ids)


def test_the_maps_name_real_operations() -> None:
    ids = {op.operation_id for op in operations()}
    assert set(BODY_EXAMPLES) <= ids
    assert len(ids) == len(operations())


def test_every_api_operation_is_a_404_for_another_organisations_objects(
    tenants: Tenants, sandbox: Any, watch_side_effects: Any
) -> None:
    alpha, bravo = tenants.alpha, tenants.bravo
    ops = operations()
    ids = object_ids(alpha)
    missing = sorted(
        {
            f"{op}: {p['name']}"
            for op in ops
            for p in op.parameters
            if p["name"] not in ids and (p["in"] == "path" or p["name"] not in NOT_AN_OBJECT)
        }
    )
    assert not missing, f"parameters object_ids() does not know: {missing}"
    callers = [
        key_caller("bravo's API key", bravo.key),
        session_caller("bravo's owner (session)", bravo.owner),
        session_caller("bravo's member (session)", bravo.member),
    ]
    before = outside_of(bravo.org)
    calls_before = sandbox.counters()["total"]
    started = time.monotonic()
    walked = 0
    with watch_side_effects() as quiet:
        for op in ops:
            for caller in callers:
                answer = request(caller, op, ids)
                walked += 1
                where = f"{op} as {caller.name}"
                body = answer.text()
                if op.path_params:
                    assert answer.status == 404, f"{where}: {answer.status} {body}"
                    assert_envelope_error(answer.response, 404, "not_found")
                else:
                    assert answer.status < 500, f"{where}: {body}"
                assert not leaked(body, alpha, with_ids=True), f"{where}: {body}"
    assert quiet.published == [], "Celery messages went out"
    assert quiet.callbacks == [], "work was queued for after the commit"
    assert sandbox.counters()["total"] == calls_before, "a provider call went out"
    assert_unchanged(before, outside_of(bravo.org))
    print(f"\n{len(ops)} operations, {walked} calls in {time.monotonic() - started:.1f} s")

    # The same objects are real and reachable for their own organisation: the 404s above
    # come from the scoping, and the lists above would have shown alpha's data.
    own = key_caller("alpha's API key", alpha.key)
    for op in ops:
        if op.method != "GET" or op.path.endswith("/events") or op.path == f"{API}/health":
            continue  # the event stream stays open while the run waits; health has no data
        answer = request(own, op, ids)
        assert 200 <= answer.status < 300, f"{op} as alpha: {answer.response.content!r}"
        if not op.path_params:
            assert leaked(answer.text(), alpha, with_ids=True), f"{op} as alpha"


def body_references(op: Operation, ids: dict[str, Any]) -> list[str]:
    """The properties of the operation's request body that name an object."""
    if op.body is None:
        return []
    schemas = openapi()["components"]["schemas"]
    found: list[str] = []

    def visit(schema: dict[str, Any]) -> None:
        if "$ref" in schema:
            visit(schemas[schema["$ref"].rsplit("/", 1)[1]])
        for option in schema.get("anyOf", []):
            visit(option)
        found.extend(
            name
            for name in schema.get("properties", {})
            if name in ids and name not in OBJECT_TYPES
        )

    visit(op.body)
    return found


def test_a_body_naming_another_organisations_object_is_refused_as_a_made_up_one(
    tenants: Tenants, watch_side_effects: Any
) -> None:
    """bravo's own routes, with alpha's objects in the body (``connection_id``): refused
    exactly as a made-up id is, nothing changed."""
    alpha, bravo = tenants.alpha, tenants.bravo
    own, theirs = object_ids(bravo), object_ids(alpha)
    made_up = {name: uuid.uuid4() for name in theirs}
    caller = key_caller("bravo's API key", bravo.key)
    before = outside_of(bravo.org)
    # bravo's own workflows and runs too: a refused request changes nothing.
    workflows = Workflow.objects.filter(organization=bravo.org).order_by("pk")
    mine = (list(workflows.values()), WorkflowRun.objects.count())
    checked = []
    with watch_side_effects() as quiet:
        for op in operations():
            if not (refs := body_references(op, own)):
                continue
            got = request(caller, op, own, body_ids=theirs)
            invented = request(caller, op, own, body_ids=made_up)
            assert 400 <= got.status < 500, f"{op}: {got.status} {got.text()}"
            first = orjson.loads(got.response.content)["error"]
            second = orjson.loads(invented.response.content)["error"]
            assert (got.status, first["code"], first["message"]) == (
                invented.status,
                second["code"],
                second["message"],
            ), op
            assert not leaked(got.text(), alpha, with_ids=True), op
            checked.append(f"{op} ({', '.join(refs)})")
    assert quiet.published == []
    assert quiet.callbacks == []
    assert_unchanged(before, outside_of(bravo.org))
    assert (list(workflows.values()), WorkflowRun.objects.count()) == mine
    assert len(checked) >= 2, checked  # PATCH /workflows/{key}, POST /workflows/{key}/runs


def test_a_session_cannot_pick_another_organisation_or_skip_csrf(tenants: Tenants) -> None:
    bravo = session_caller("bravo's owner", tenants.bravo.owner)
    url = f"{API}/connections"
    theirs = bravo.client.get(url, headers={"X-Organization": tenants.alpha.org.slug})
    nobody = bravo.client.get(url, headers={"X-Organization": "no-such-organisation"})
    for response in (theirs, nobody):
        assert_envelope_error(response, 403, "permission_denied")
    assert orjson.loads(theirs.content)["error"] == orjson.loads(nobody.content)["error"]
    # Without its CSRF token the same browser is refused before anything is looked up.
    response = bravo.client.post(f"{API}/connections/{tenants.alpha.connection.pk}/test")
    assert_envelope_error(response, 403, "csrf_failed")


def _connect_token(org: Organization, **claims: Any) -> str:
    return connect_session_issue(
        organization_id=org.pk,
        providers=claims.pop("providers", []),
        end_user=EndUser(id="customer-1"),
        ttl_seconds=claims.pop("ttl", 600),
        actor=ACTOR,
    ).token


@pytest.mark.parametrize("credential", ["revoked", "made_up", "connect_session"])
def test_refused_credentials_are_401_on_every_operation(
    tenants: Tenants, credential: str, watch_side_effects: Any
) -> None:
    alpha = tenants.alpha
    key = {
        "revoked": alpha.revoked_key,
        "made_up": f"sbk_{alpha.api_key.prefix.removeprefix('sbk_')}_not-the-secret",
        "connect_session": _connect_token(alpha.org),
    }[credential]
    caller = key_caller(credential, key)
    ids = object_ids(alpha)
    before = outside_of(Organization(pk=uuid.uuid4()))  # every row
    wrong = []
    with watch_side_effects() as quiet:
        for op in operations():
            if not op.secured:
                continue
            answer = request(caller, op, ids)
            code = (orjson.loads(answer.response.content).get("error") or {}).get("code")
            if answer.status != 401 or code != "unauthenticated":
                wrong.append(f"{op}: {answer.status} {code}")
    assert not wrong, "\n".join(wrong)
    print(f"\n{credential}: {sum(op.secured for op in operations())} operations refused")
    assert quiet.published == []
    assert quiet.callbacks == []
    assert_unchanged(before, outside_of(Organization(pk=uuid.uuid4())))


# --- the rest of the URL conf ------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    route: str  # as in the URL conf: "connect/<slug:provider>/start"
    name: str | None  # "connect:start"
    kwargs: tuple[str, ...]

    def url(self, values: dict[str, str]) -> str:
        missing = [k for k in self.kwargs if k not in values]
        assert not missing, f"{self.route}: no value for {missing} in URL_VALUES"
        if self.name is not None:
            return reverse(self.name, kwargs={k: values[k] for k in self.kwargs})

        def value(match: re.Match[str]) -> str:
            return values[match.group(1)]

        return "/" + re.sub(r"<(?:\w+:)?(\w+)>", value, self.route)


def url_conf() -> Iterator[Route]:
    def walk(patterns: list[Any], prefix: str, namespace: str | None) -> Iterator[Route]:
        for p in patterns:
            if isinstance(p, URLResolver):
                ns = p.namespace or namespace
                yield from walk(p.url_patterns, prefix + str(p.pattern), ns)
            elif isinstance(p, URLPattern):
                name = f"{namespace}:{p.name}" if namespace and p.name else p.name
                kwargs = tuple(p.pattern.regex.groupindex)
                yield Route(prefix + str(p.pattern), name, kwargs)

    yield from walk(get_resolver().url_patterns, "", None)


def _ninja_route(route: str) -> str:
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)


URL_VALUES = {"provider": "hubspot", "key": "not-a-key", "uidb36": "1"}
# The API's own patterns that are no operation: its root, the document and its docs page.
NOT_OPERATIONS = {f"{API}/", f"{API}/docs", f"{API}/openapi.json"}


def _page(body: bytes) -> str:
    # Per-response tokens aside (CSP nonces, CSRF tokens), two pages must read the same.
    text = body.decode()
    text = re.sub(r'nonce="[^"]*"', "", text)
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", text)


def test_the_api_url_patterns_are_exactly_the_documented_operations() -> None:
    """Every /api/v1 pattern in the URL conf is an operation of the OpenAPI document (so the
    walk above covers it), apart from the document and its docs page."""
    patterns = {_ninja_route(r.route) for r in url_conf() if r.route.startswith("api/v1/")}
    documented = set(openapi()["paths"])
    assert patterns - documented == NOT_OPERATIONS
    assert documented <= patterns


def test_every_other_route_refuses_or_hides_another_organisations_data(
    tenants: Tenants, watch_side_effects: Any
) -> None:
    alpha, bravo = tenants.alpha, tenants.bravo
    browser = session_caller("bravo's owner", bravo.owner)
    client, token = browser.client, browser.headers["X-CSRFToken"]
    before = outside_of(bravo.org)
    attempts = OAuthAttempt.objects.count()
    seen: dict[str, int] = {}
    with watch_side_effects() as quiet:
        for route in url_conf():
            if route.route.startswith("admin/"):
                continue  # test_admin_scoping.py
            if (
                route.route.startswith("api/v1/")
                and _ninja_route(route.route) not in NOT_OPERATIONS
            ):
                continue  # the operations: the walks above
            url = route.url(URL_VALUES)
            if route.route.startswith("api/v1/"):
                response = client.get(url)
                assert response.status_code < 500, route
                assert not leaked(response.content.decode(), alpha, with_ids=True), route
            elif route.name in ("connect:index", "connect:start"):
                # A signed-in member naming another organisation: refused exactly as a
                # made-up organisation is, nothing started.
                theirs = client.get(url, {"org": alpha.org.slug})
                nobody = client.get(url, {"org": "no-such-organisation"})
                assert theirs.status_code == 403, route
                assert _page(theirs.content) == _page(nobody.content), route
                assert not leaked(theirs.content.decode(), alpha, with_ids=True), route
            elif route.name == "connect:callback":
                response = client.get(url, {"state": "not-a-state", "code": "x"})
                assert response.status_code == 400, route
            elif route.route.startswith("webhooks/"):
                # bravo's credentials are no webhook signature.
                delivery = [{"portalId": int(alpha.connection.external_account_id)}]
                response = client.post(
                    url,
                    orjson.dumps(delivery),
                    content_type="application/json",
                    headers={"Authorization": f"Bearer {bravo.key}", "X-CSRFToken": token},
                )
                assert_envelope_error(response, 401, "signature_invalid")
            elif route.route == "" or route.route.startswith("accounts/"):
                # Sign-in pages (allauth) and home: about the person, no organisation's objects.
                response = client.get(url)
                assert response.status_code < 500, route
                assert not leaked(response.content.decode(), alpha, with_ids=True), route
            else:
                pytest.fail(f"route {route.route!r} ({route.name}) is not classified here")
            seen[route.route] = seen.get(route.route, 0) + 1
    assert quiet.published == []
    assert quiet.callbacks == []
    assert OAuthAttempt.objects.count() == attempts
    assert_unchanged(before, outside_of(bravo.org))
    assert {"connect/", "connect/<slug:provider>/start", "webhooks/<slug:provider>"} <= set(seen)
    print(f"\n{len(seen)} other routes of the URL conf walked")


# --- connect-session tokens ----------------------------------------------------------------


def _forged(org: Organization, *, key: bytes, expires: datetime | None = None) -> str:
    now = datetime.now(UTC)
    payload = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": str(org.pk),
        "jti": str(uuid.uuid4()),
        "iat": int(now.timestamp()),
        "exp": int((expires or now + timedelta(minutes=10)).timestamp()),
        "providers": [],
        "end_user": None,
    }
    return jwt.encode(payload, key, algorithm=ALGORITHM)


def _tampered(token: str, org: Organization) -> str:
    """The token with its organisation swapped, signature kept."""
    header, payload, signature = token.split(".")
    claims = orjson.loads(jwt.utils.base64url_decode(payload))
    claims["sub"] = str(org.pk)
    swapped = jwt.utils.base64url_encode(orjson.dumps(claims)).decode()
    return f"{header}.{swapped}.{signature}"


def test_connect_session_tokens_outside_their_bounds_are_refused(
    tenants: Tenants, watch_side_effects: Any
) -> None:
    from accounts.connect_sessions import _signing_key

    alpha, bravo = tenants.alpha, tenants.bravo
    expired = _forged(alpha.org, key=_signing_key(), expires=datetime.now(UTC) - timedelta(1))
    gone = Organization.objects.create(name="Gone", slug="gone-org")
    of_gone = _connect_token(gone)
    gone.delete()
    salesforce_only = _connect_token(alpha.org, providers=["salesforce"])
    cases: list[tuple[str, str, int, str]] = [
        ("expired", expired, 401, "expired"),
        (
            "tampered: another organisation",
            _tampered(_connect_token(alpha.org), bravo.org),
            401,
            "",
        ),
        (
            "signed with another key",
            _forged(bravo.org, key=b"not-our-signing-key-but-32-bytes-long"),
            401,
            "",
        ),
        ("not a token", "not-a-token", 401, ""),
        ("organisation deleted", of_gone, 404, ""),
    ]
    before = outside_of(Organization(pk=uuid.uuid4()))  # every row
    with watch_side_effects() as quiet:
        for name, token, status, text in cases:
            # As an end customer's browser uses it: open the link, then start a connection.
            browser = Client()
            opened = browser.get("/connect/", {"session": token})
            started = browser.get("/connect/hubspot/start")
            assert opened.status_code == status, (name, opened.status_code)
            assert text in opened.content.decode(), name
            assert started.status_code in (401, 404), (name, started.status_code)  # no consent
            for response in (opened, started):
                for t in (alpha, bravo):
                    assert not leaked(response.content.decode(), t, with_ids=True), name
        # A provider the session does not allow: refused, no consent page.
        browser = Client()
        assert browser.get("/connect/", {"session": salesforce_only}).status_code == 200
        assert browser.get("/connect/hubspot/start").status_code == 403
        # The link is the organisation's: naming another one changes nothing.
        listed = browser.get("/connect/", {"session": salesforce_only, "org": bravo.org.slug})
        assert listed.status_code == 200
        assert alpha.org.name in listed.content.decode()
        assert not leaked(listed.content.decode(), bravo, with_ids=True)
    assert quiet.published == []
    assert_unchanged(before, outside_of(Organization(pk=uuid.uuid4())))


def test_a_callback_in_another_browser_cannot_finish_an_organisations_sign_in(
    tenants: Tenants,
) -> None:
    """alpha's pending consent, finished in bravo's browser: refused, nothing connected. The
    attempt is burned (``state_not_bound``), by design: a state seen elsewhere has leaked."""
    alpha, bravo = tenants.alpha, tenants.bravo
    browser = session_caller("bravo's owner", bravo.owner).client
    connections = set(Connection.objects.values_list("pk", flat=True))
    response = browser.get(
        "/connect/hubspot/callback", {"state": alpha.oauth_attempt.state, "code": "stolen"}
    )
    assert response.status_code in (400, 403)
    assert not leaked(response.content.decode(), alpha, with_ids=True)
    assert set(Connection.objects.values_list("pk", flat=True)) == connections
    alpha.oauth_attempt.refresh_from_db()
    assert alpha.oauth_attempt.status == AttemptStatus.FAILED
    assert alpha.oauth_attempt.error_code == "state_not_bound"
    assert alpha.oauth_attempt.connection_id is None
