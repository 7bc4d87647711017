"""Salesforce's part of the control API (``/_sandbox/salesforce``).

``POST /tokens`` ``{"org": "acme"|"globex", "scope"?, "host"?}`` mints a token answer for an org
without the browser flow (``host``: ``login`` (default), ``test`` or a My Domain such as
``acme.my.salesforce.com`` -- where the identity URL points); ``POST /tokens/expire`` ends every
session; ``POST /tokens/revoke`` ``{"refresh_token"?, "reason"?}`` revokes one refresh token (or
all) with their access tokens (``reason``: ``expired`` (default) or ``authentication_failure``,
the ``error_description`` a later refresh gets); ``GET /tokens/issued`` lists every access and
refresh token issued since the last reset; ``POST /limits`` ``{"daily"?, "used"?, "org"?}``
sets the daily API budget and pretends calls were made (``org`` default: all); ``GET /orgs``
lists the seeded orgs; ``GET|POST /config`` reads or changes token lifetimes and refresh-token
rotation.

``POST /seed`` ``{"org", "sobject": "Contact"|"Account"|"Opportunity", "count", "prefix"?,
"start"?}`` creates ``count`` records at once (no API calls): contacts with
``{prefix}-{i}@example.com``, accounts ``{Prefix} Account {i}``, opportunities ``{prefix}
opportunity {i}``, ``i`` from ``start`` (default 1), their ``SystemModstamp`` one millisecond
apart, ending about now; answers ``{"created", "ids": [first, last]}``. ``GET
/stats?org=&sobject=`` answers ``{"live", "deleted", "archived" (= deleted), "duplicates":
{<key>: n}}``: for each key (``Email`` or ``Name``, and ``Switchboard_Write_Id__c``; Task and
Note: those of them they have), how many values more than one live record holds. ``POST /recycle-bin/empty`` ``{"org"?}`` empties the
recycle bin (``queryAll`` no longer sees those deleted records).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from ..control import control
from . import ids, limits
from .oauth import MY_DOMAIN
from .schema import WRITE_ID, SObject, format_datetime, from_ms, now, resolve, to_ms
from .state import DEFAULT_SCOPES, OrgData, Record, SalesforceState

MAX_SEED = 200_000
NATURAL_KEYS = {"Contact": "Email", "Account": "Name", "Opportunity": "Name"}
COUNTED = {**NATURAL_KEYS, "Task": "Subject", "Note": "Title"}  # what stats answers for
CONFIG_INTS = {"access_token_ttl": 1, "code_ttl": 0}  # code_ttl 0: codes are born expired
CONFIG_BOOLS = ("rotate_refresh_tokens",)
REASONS = {
    "expired": "expired access/refresh token",
    "authentication_failure": "authentication failure",
}


def _salesforce(request: Request) -> SalesforceState:
    state: SalesforceState = request.app.state.salesforce
    return state


def _int(body: dict[str, Any], name: str, smallest: int) -> int:
    value = body.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < smallest:
        raise ValueError(f"{name} must be an integer of at least {smallest}")
    return value


def _login_url(request: Request, host: Any) -> str:
    base = str(request.base_url).rstrip("/") + "/salesforce"
    if host in (None, "login", "test"):
        return f"{base}/{host or 'login'}"
    if isinstance(host, str) and MY_DOMAIN.match(host):
        return f"{base}/mydomain/{host}"
    raise ValueError("host must be login, test or a My Domain (acme.my.salesforce.com)")


@control
def mint_tokens(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    salesforce = _salesforce(request)
    org = body.get("org", "acme")
    if org not in salesforce.orgs:
        raise LookupError(f"No org {org!r}; the seeded orgs are {sorted(salesforce.orgs)}")
    scope = body.get("scope", " ".join(DEFAULT_SCOPES))
    if not isinstance(scope, str) or not scope.split():
        raise ValueError("scope must be a space-separated string")
    access, refresh = salesforce.issue_tokens(
        org=org, scopes=tuple(scope.split()), login_url=_login_url(request, body.get("host"))
    )
    return salesforce.token_answer(access, refresh)


@control
def expire_tokens(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    return {"expired": _salesforce(request).expire_access_tokens()}


@control
def revoke_tokens(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    salesforce = _salesforce(request)
    reason = REASONS.get(str(body.get("reason", "expired")))
    if reason is None:
        raise ValueError(f"reason must be one of {sorted(REASONS)}")
    wanted = body.get("refresh_token")
    if wanted is not None:
        found = salesforce.live_refresh(str(wanted))
        if found is None:
            raise LookupError("No such live refresh token")
        targets = [found]
    else:
        targets = [t for t in salesforce.refresh_tokens.values() if not t.revoked]
    for refresh in targets:
        salesforce.revoke(refresh, reason=reason)
    if wanted is None:  # minted without a refresh token: end those sessions too
        for access in salesforce.access_tokens.values():
            access.revoked = True
    return {"revoked": len(targets)}


@control
def issued_tokens(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    """Every access and refresh token issued since the last reset (tests that look for leaked
    secrets)."""
    salesforce = _salesforce(request)
    return {"access": list(salesforce.access_tokens), "refresh": list(salesforce.refresh_tokens)}


@control
def set_limits(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    salesforce = _salesforce(request)
    unknown = set(body) - {"daily", "used", "org"}
    if unknown:
        raise ValueError(f"Unknown limit(s): {sorted(unknown)}")
    org = body.get("org")
    if org is not None and org not in salesforce.orgs:
        raise LookupError(f"No org {org!r}")
    if "daily" in body:
        salesforce.limits.daily = _int(body, "daily", 1)
    if "used" in body:
        count = _int(body, "used", 0)
        for data in salesforce.orgs.values():
            if org is None or data.org.key == org:
                limits.fill(data, count)
    return salesforce.limits.as_dict() | {
        "used": {key: limits.used(data) for key, data in salesforce.orgs.items()}
    }


@control
def orgs(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    salesforce = _salesforce(request)
    return {
        "orgs": [
            {
                "key": data.org.key,
                "id": data.org.id,
                "id15": ids.short(data.org.id),
                "name": data.org.name,
                "user_id": data.org.user_id,
                "username": data.org.username,
                "is_sandbox": data.org.is_sandbox,
                "instance_url": salesforce.config.instance_url,
            }
            for data in salesforce.orgs.values()
        ]
    }


@control
def config(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    salesforce = _salesforce(request)
    unknown = set(body) - set(CONFIG_INTS) - set(CONFIG_BOOLS)
    if unknown:
        raise ValueError(f"Unknown setting(s): {sorted(unknown)}")
    for name, smallest in CONFIG_INTS.items():
        if name in body:
            setattr(salesforce.config, name, _int(body, name, smallest))
    for name in CONFIG_BOOLS:
        if name in body:
            if not isinstance(body[name], bool):
                raise ValueError(f"{name} must be true or false")
            setattr(salesforce.config, name, body[name])
    return salesforce.config.as_dict() | {"limits": salesforce.limits.as_dict()}


def _org(salesforce: SalesforceState, raw: Any) -> OrgData:
    if raw not in salesforce.orgs:
        raise LookupError(f"No org {raw!r}; the seeded orgs are {sorted(salesforce.orgs)}")
    return salesforce.orgs[str(raw)]


def _seedable(raw: Any) -> SObject:
    sobject = resolve(str(raw or ""))
    if sobject is None or sobject.name not in NATURAL_KEYS:
        raise ValueError(f"sobject must be one of {sorted(NATURAL_KEYS)}")
    return sobject


def _seed_values(sobject: SObject, prefix: str, i: int) -> dict[str, Any]:
    if sobject.name == "Contact":
        return {
            "FirstName": prefix.capitalize(),
            "LastName": f"Contact {i}",
            "Name": f"{prefix.capitalize()} Contact {i}",
            "Email": f"{prefix}-{i}@example.com".lower(),
        }
    if sobject.name == "Account":
        return {
            "Name": f"{prefix.capitalize()} Account {i}",
            "Website": f"https://{prefix}-{i}.example.com".lower(),
            "Type": "Prospect",
        }
    return {
        "Name": f"{prefix} opportunity {i}",
        "StageName": "Prospecting",
        "CloseDate": "2030-01-31",
        "Amount": float(100 * (i % 1000 + 1)),
        "IsClosed": False,
        "IsWon": False,
    }


@control
def seed(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    salesforce = _salesforce(request)
    unknown = set(body) - {"org", "sobject", "count", "prefix", "start"}
    if unknown:
        raise ValueError(f"Unknown field(s): {sorted(unknown)}")
    data = _org(salesforce, body.get("org", "acme"))
    sobject = _seedable(body.get("sobject", "Contact"))
    count = _int(body, "count", 1)
    if count > MAX_SEED:
        raise ValueError(f"count must be at most {MAX_SEED}")
    start = _int({"start": body.get("start", 1)}, "start", 0)
    prefix = body.get("prefix", "seed")
    if not isinstance(prefix, str) or not prefix or not prefix.replace("-", "").isalnum():
        raise ValueError("prefix must be letters, digits and dashes")
    first_ms = max(data.clock_ms + 1, to_ms(now()) - count + 1)
    user = data.org.user_id
    blank = {f.name: None for f in sobject.fields}
    made: list[str] = []
    for offset, i in enumerate(range(start, start + count)):
        record_id = salesforce.next_id(sobject.prefix)
        stamp = format_datetime(from_ms(first_ms + offset))
        values = blank | _seed_values(sobject, prefix, i)
        values |= {
            "Id": record_id,
            "IsDeleted": False,
            "OwnerId": user,
            "CreatedDate": stamp,
            "CreatedById": user,
            "LastModifiedDate": stamp,
            "LastModifiedById": user,
            "SystemModstamp": stamp,
        }
        data.insert(Record(record_id, sobject.name, values), first_ms + offset)
        made.append(record_id)
    data.clock_ms = first_ms + count - 1
    return {"created": count, "ids": [made[0], made[-1]]}


@control
def stats(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    salesforce = _salesforce(request)
    query = request.query_params
    data = _org(salesforce, query.get("org", body.get("org", "acme")))
    sobject = resolve(str(query.get("sobject", body.get("sobject", "Contact"))))
    if sobject is None or sobject.name not in COUNTED:
        raise ValueError(f"sobject must be one of {sorted(COUNTED)}")
    table = data.table(sobject.name)
    live = [r for r in table.values() if not r.deleted]
    duplicates: dict[str, int] = {}
    for key in (k for k in (COUNTED[sobject.name], WRITE_ID) if sobject.field(k)):
        held = Counter(
            str(value).strip().casefold()
            for r in live
            if (value := r.values.get(key)) is not None and str(value).strip()
        )
        duplicates[key] = sum(1 for n in held.values() if n > 1)
    deleted = len(table) - len(live)
    return {
        "org": data.org.key,
        "sobject": sobject.name,
        "live": len(live),
        "deleted": deleted,
        "archived": deleted,
        "duplicates": duplicates,
    }


@control
def empty_recycle_bin(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    salesforce = _salesforce(request)
    org = body.get("org")
    targets = [_org(salesforce, org)] if org is not None else list(salesforce.orgs.values())
    emptied = 0
    for data in targets:
        for table in data.records.values():
            for record in table.values():
                if record.deleted and record.deleted_ms:
                    record.deleted_ms = 0  # long gone: queryAll no longer returns it
                    emptied += 1
    return {"emptied": emptied}


def routes() -> list[BaseRoute]:
    return [
        Route("/tokens", mint_tokens, methods=["POST"]),
        Route("/tokens/expire", expire_tokens, methods=["POST"]),
        Route("/tokens/revoke", revoke_tokens, methods=["POST"]),
        Route("/tokens/issued", issued_tokens, methods=["GET"]),
        Route("/limits", set_limits, methods=["POST"]),
        Route("/orgs", orgs, methods=["GET"]),
        Route("/config", config, methods=["GET", "POST"]),
        Route("/seed", seed, methods=["POST"]),
        Route("/stats", stats, methods=["GET"]),
        Route("/recycle-bin/empty", empty_recycle_bin, methods=["POST"]),
    ]
