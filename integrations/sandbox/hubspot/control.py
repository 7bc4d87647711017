"""HubSpot's part of the control API (``/_sandbox/hubspot``).

``POST /limits`` sets the rate limits; ``POST /tokens`` mints a token pair for a portal without
the browser flow; ``POST /tokens/expire`` expires every access token now; ``POST /tokens/revoke``
revokes one refresh token (or all) with its access tokens; ``GET /tokens/issued`` lists every
access and refresh token issued since the last reset (tests that look for leaked secrets);
``GET|POST /config`` reads or changes the app's behaviour (token lifetime, refresh-token
rotation, daily headers).

``POST /seed`` ``{"hub_id", "object_type", "count", "prefix"?, "start"?}`` creates ``count``
records at once (no API calls, no webhook events): contacts ``{prefix}-{i}@example.com``,
companies ``{prefix}-{i}.example.com``, deals ``{prefix} deal {i}``, ``i`` from ``start``
(default 1), their modification times one millisecond apart, ending about now; answers
``{"created", "ids": [first, last]}``. ``GET /stats?hub_id=&object_type=`` answers ``{"live",
"archived", "duplicates": {<key>: n}}``: for each key (``email`` or ``domain`` or ``dealname``,
and ``switchboard_write_id``; notes and tasks: the latter), how many values more than one live
record holds.
``POST /touch`` ``{"hub_id", "object_type", "count", "start"?}`` gives ``count`` live records
(in id order, from the ``start``-th, default 0) new modification times, one millisecond apart
and ending about now, as writes that change no other value would (no API calls, no webhook
events); answers ``{"touched", "ids": [first, last]}`` (benchmarks: a known amount of work for
an incremental sync).
``GET|POST /webhooks`` reads or sets the webhook subscription (see ``webhooks.py``).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from ..control import control
from .schema import WRITE_ID, ObjectSchema, iso_ms, resolve_type
from .state import FULL_SCOPES, HubSpotState, PortalData, Record, from_ms, to_ms

MAX_SEED = 200_000
NATURAL_KEYS = {"contacts": "email", "companies": "domain", "deals": "dealname"}
LIMIT_FIELDS = {"per_10s": 1, "daily": 1, "search_per_second": 0}  # field -> smallest value
CONFIG_INTS = {"access_token_ttl": 1, "code_ttl": 1}
CONFIG_BOOLS = ("rotate_refresh_tokens", "daily_headers")


def _hubspot(request: Request) -> HubSpotState:
    state: HubSpotState = request.app.state.hubspot
    return state


def _int(body: dict[str, Any], name: str, default: int, smallest: int) -> int:
    value = body.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < smallest:
        raise ValueError(f"{name} must be an integer of at least {smallest}")
    return value


@control
def limits(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    hubspot = _hubspot(request)
    unknown = set(body) - set(LIMIT_FIELDS)
    if unknown:
        raise ValueError(f"Unknown limit(s): {sorted(unknown)}")
    for name, smallest in LIMIT_FIELDS.items():
        if name in body:
            setattr(hubspot.limits, name, _int(body, name, 0, smallest))
    return hubspot.limits.as_dict()


@control
def mint_tokens(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    hubspot = _hubspot(request)
    hub_id = _int(body, "hub_id", 62515, 1)
    if hub_id not in hubspot.portals:
        raise LookupError(f"No portal {hub_id}; the seeded portals are {sorted(hubspot.portals)}")
    expires_in = _int(body, "expires_in", hubspot.config.access_token_ttl, 0)
    scopes = body.get("scopes", list(FULL_SCOPES))
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise ValueError("scopes must be a list of strings")
    access, refresh = hubspot.issue_tokens(
        hub_id=hub_id, scopes=tuple(scopes), expires_in=expires_in
    )
    return hubspot.token_answer(access, refresh)


@control
def expire_tokens(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    return {"expired": _hubspot(request).expire_access_tokens()}


@control
def revoke_tokens(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    hubspot = _hubspot(request)
    wanted = body.get("refresh_token")
    if wanted is not None:
        found = hubspot.live_refresh(str(wanted))
        if found is None:
            raise LookupError("No such live refresh token")
        targets = [found]
    else:
        targets = [t for t in hubspot.refresh_tokens.values() if not t.revoked]
    for refresh in targets:
        hubspot.revoke(refresh, with_access=True)
    return {"revoked": len(targets)}


@control
def issued_tokens(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    hubspot = _hubspot(request)
    return {"access": list(hubspot.access_tokens), "refresh": list(hubspot.refresh_tokens)}


@control
def config(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    hubspot = _hubspot(request)
    unknown = set(body) - set(CONFIG_INTS) - set(CONFIG_BOOLS)
    if unknown:
        raise ValueError(f"Unknown setting(s): {sorted(unknown)}")
    for name, smallest in CONFIG_INTS.items():
        if name in body:
            setattr(hubspot.config, name, _int(body, name, 0, smallest))
    for name in CONFIG_BOOLS:
        if name in body:
            if not isinstance(body[name], bool):
                raise ValueError(f"{name} must be true or false")
            setattr(hubspot.config, name, body[name])
    return hubspot.config.as_dict() | {
        "limits": hubspot.limits.as_dict(),
        "portals": [
            {"hub_id": d.portal.hub_id, "domain": d.portal.domain, "user": d.portal.user}
            for d in hubspot.portals.values()
        ],
    }


def _portal(hubspot: HubSpotState, raw: Any) -> PortalData:
    try:
        hub_id = int(raw)
    except (TypeError, ValueError):
        raise ValueError("hub_id must be an integer") from None
    if hub_id not in hubspot.portals:
        raise LookupError(f"No portal {hub_id}; the seeded portals are {sorted(hubspot.portals)}")
    return hubspot.portal_data(hub_id)


def _schema(raw: Any, *, seeding: bool = False) -> ObjectSchema:
    schema = resolve_type(str(raw or ""))
    if seeding and (schema is None or schema.name not in NATURAL_KEYS):
        raise ValueError("object_type must be contacts, companies or deals")
    if schema is None:
        raise ValueError("object_type must be contacts, companies, deals, notes or tasks")
    return schema


def _seed_values(schema: ObjectSchema, prefix: str, i: int) -> dict[str, str]:
    if schema.name == "contacts":
        return {
            "email": f"{prefix}-{i}@example.com".lower(),
            "firstname": prefix.capitalize(),
            "lastname": f"Contact {i}",
            "lifecyclestage": "lead",
        }
    if schema.name == "companies":
        return {
            "name": f"{prefix.capitalize()} Company {i}",
            "domain": f"{prefix}-{i}.example.com".lower(),
            "industry": "CONSTRUCTION",
        }
    return {
        "dealname": f"{prefix} deal {i}",
        "amount": str(100 * (i % 1000 + 1)),
        "dealstage": "appointmentscheduled",
        "pipeline": "default",
    }


@control
def seed(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    hubspot = _hubspot(request)
    unknown = set(body) - {"hub_id", "object_type", "count", "prefix", "start"}
    if unknown:
        raise ValueError(f"Unknown field(s): {sorted(unknown)}")
    data = _portal(hubspot, body.get("hub_id", 62515))
    schema = _schema(body.get("object_type", "contacts"), seeding=True)
    count = _int(body, "count", 0, 1)
    if count > MAX_SEED:
        raise ValueError(f"count must be at most {MAX_SEED}")
    start = _int(body, "start", 1, 0)
    prefix = body.get("prefix", "seed")
    if not isinstance(prefix, str) or not prefix or not prefix.replace("-", "").isalnum():
        raise ValueError("prefix must be letters, digits and dashes")
    planned = [_seed_values(schema, prefix, i) for i in range(start, start + count)]
    if schema.name == "contacts":
        taken = [v["email"] for v in planned if v["email"] in data.emails]
        if taken:
            raise ValueError(f"Email {taken[0]} is taken; seed with another prefix or start")
    now_ms = to_ms(datetime.now(UTC))
    first_ms = max(data.clock_ms + 1, now_ms - count + 1)
    ids: list[str] = []
    for offset, values in enumerate(planned):
        record_id = hubspot.next_id()
        moment = from_ms(first_ms + offset)
        stamp = iso_ms(moment)
        properties = values | {"hs_object_id": record_id, "createdate": stamp}
        properties |= dict.fromkeys(schema.modified_props, stamp)
        data.insert(Record(record_id, schema.name, properties, moment, moment))
        if schema.name == "contacts":
            data.emails[values["email"]] = record_id
        ids.append(record_id)
    data.clock_ms = first_ms + count - 1
    return {"created": count, "ids": [ids[0], ids[-1]]}


@control
def touch(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    hubspot = _hubspot(request)
    unknown = set(body) - {"hub_id", "object_type", "count", "start"}
    if unknown:
        raise ValueError(f"Unknown field(s): {sorted(unknown)}")
    data = _portal(hubspot, body.get("hub_id", 62515))
    schema = _schema(body.get("object_type", "contacts"), seeding=True)
    count = _int(body, "count", 0, 1)
    start = _int(body, "start", 0, 0)
    live = [r for r in data.table(schema.name).values() if not r.archived]
    chosen = live[start : start + count]
    if len(chosen) < count:
        raise ValueError(f"Only {len(live)} live {schema.name}: cannot touch {count} from {start}")
    # Modification times one millisecond apart, ending about now (as seeding does): taken from
    # the clock one by one, a burst would run the clock ahead of real time.
    first_ms = max(data.clock_ms + 1, to_ms(datetime.now(UTC)) - count + 1)
    log = data.log(schema.name)
    for offset, record in enumerate(chosen):
        log.remove(record.modified_ms, record.id)
        record.updated_at = from_ms(first_ms + offset)
        record.keys.clear()
        log.add(first_ms + offset, record.id)
        record.properties |= dict.fromkeys(schema.modified_props, iso_ms(record.updated_at))
    data.clock_ms = first_ms + count - 1
    return {"touched": count, "ids": [chosen[0].id, chosen[-1].id]}


@control
def stats(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    hubspot = _hubspot(request)
    query = request.query_params
    data = _portal(hubspot, query.get("hub_id", body.get("hub_id", 62515)))
    schema = _schema(query.get("object_type", body.get("object_type", "contacts")))
    table = data.table(schema.name)
    live = [r for r in table.values() if not r.archived]
    duplicates: dict[str, int] = {}
    for key in (k for k in (NATURAL_KEYS.get(schema.name), WRITE_ID) if k):
        held = Counter(
            value.strip().lower()
            for r in live
            if (value := r.properties.get(key)) is not None and value.strip()
        )
        duplicates[key] = sum(1 for n in held.values() if n > 1)
    return {
        "hub_id": data.portal.hub_id,
        "object_type": schema.name,
        "live": len(live),
        "archived": len(table) - len(live),
        "duplicates": duplicates,
    }


@control
def webhooks(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    hubspot = _hubspot(request)
    if request.method == "POST":
        hubspot.webhooks.configure(body)
    return hubspot.webhooks.status()


def routes() -> list[BaseRoute]:
    return [
        Route("/limits", limits, methods=["POST"]),
        Route("/tokens", mint_tokens, methods=["POST"]),
        Route("/tokens/expire", expire_tokens, methods=["POST"]),
        Route("/tokens/revoke", revoke_tokens, methods=["POST"]),
        Route("/tokens/issued", issued_tokens, methods=["GET"]),
        Route("/config", config, methods=["GET", "POST"]),
        Route("/seed", seed, methods=["POST"]),
        Route("/touch", touch, methods=["POST"]),
        Route("/stats", stats, methods=["GET"]),
        Route("/webhooks", webhooks, methods=["GET", "POST"]),
    ]
