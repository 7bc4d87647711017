"""Drawn faults (the "20% faults" scenario) and the counters, on both providers, over HTTP."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest
import requests

from tests.sandbox_fixtures import ACME_HUB_ID, GLOBEX_HUB_ID, SF_API_VERSION, Sandbox

pytestmark = pytest.mark.live

DATA = f"/services/data/v{SF_API_VERSION}"


def bearer(token: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {token['access_token']}"}


def contacts_url(sandbox: Sandbox) -> str:
    return f"{sandbox.hubspot_api_url}/crm/v3/objects/contacts"


def statuses(sandbox: Sandbox, headers: dict[str, str], calls: int) -> list[int]:
    return [
        sandbox.http.get(contacts_url(sandbox), headers=headers).status_code for _ in range(calls)
    ]


def runs(codes: list[int], status: int) -> list[tuple[int, int]]:
    """(start, length) of each run of ``status`` in ``codes``."""
    found: list[tuple[int, int]] = []
    index = 0
    while index < len(codes):
        if codes[index] == status:
            end = index
            while end < len(codes) and codes[end] == status:
                end += 1
            found.append((index, end - index))
            index = end
        else:
            index += 1
    return found


def test_defaults_inject_nothing(sandbox: Sandbox) -> None:
    settings = sandbox.http.get(f"{sandbox.url}/_sandbox/faults").json()
    assert settings["fault_rate"] == 0.0
    assert settings["timeout_after_next"] == 0
    assert settings["slow_ms"] == 1500
    assert settings["burst"] == 3
    assert settings["seed"] is None
    headers = bearer(sandbox.mint_token())
    assert set(statuses(sandbox, headers, 20)) == {200}
    counters = sandbox.counters()
    assert counters["faults_injected"] == 0
    assert counters["faults_by_kind"] == dict.fromkeys(
        ("fail", "timeout", "timeout_after", "rate_limit", "slow"), 0
    )


def test_drawn_failures_follow_the_rate_and_the_seed(sandbox: Sandbox) -> None:
    sandbox.limits(per_10s=1000)
    headers = bearer(sandbox.mint_token())
    sandbox.faults(fault_rate=0.3, fault_mix={"fail": 1}, seed=42)
    first = statuses(sandbox, headers, 100)
    failed = [code for code in first if code != 200]
    assert set(failed) <= {500, 502, 503}
    assert len(set(failed)) >= 2  # the status is drawn too
    assert 15 <= len(failed) <= 45  # about 30 of 100
    counters = sandbox.counters()
    assert counters["faults_injected"] == len(failed)
    assert counters["faults_by_kind"]["fail"] == len(failed)
    assert counters["rate_limited"] == 0
    sandbox.faults(fault_rate=0.3, fault_mix={"fail": 1}, seed=42)
    assert statuses(sandbox, headers, 100) == first  # the same seed, the same faults
    sandbox.faults(fault_rate=0.3, fault_mix={"fail": 1}, seed=43)
    assert statuses(sandbox, headers, 100) != first


def test_an_injected_failure_answers_like_hubspot_with_limit_headers(sandbox: Sandbox) -> None:
    headers = bearer(sandbox.mint_token())
    sandbox.faults(fault_rate=1.0, fault_mix={"fail": 1}, seed=1)
    failed = sandbox.http.get(contacts_url(sandbox), headers=headers)
    assert failed.status_code in (500, 502, 503)
    assert failed.json()["status"] == "error"
    assert failed.headers["X-HubSpot-RateLimit-Max"] == "110"
    assert "X-HubSpot-Correlation-Id" in failed.headers


def test_a_drawn_429_refuses_the_next_calls_of_the_same_portal(sandbox: Sandbox) -> None:
    sandbox.limits(per_10s=1000)
    acme, globex = bearer(sandbox.mint_token()), bearer(sandbox.mint_token(GLOBEX_HUB_ID))
    sandbox.faults(fault_rate=0.1, fault_mix={"rate_limit": 1}, burst=3, seed=5)
    answers: dict[str, list[httpx.Response]] = {"acme": [], "globex": []}
    for _ in range(80):
        for name, headers in (("acme", acme), ("globex", globex)):
            answers[name].append(sandbox.http.get(contacts_url(sandbox), headers=headers))
    total = 0
    for name, portal in answers.items():
        codes = [r.status_code for r in portal]
        assert set(codes) <= {200, 429}
        found = runs(codes, 429)
        assert found, name
        for start, length in found:
            # A drawn 429 and the three calls after it (unless the test stopped first).
            assert length >= 4 or start + length == len(codes), (name, codes)
        total += codes.count(429)
    # A burst stays in its portal: while Acme is refused, Globex mostly is not.
    acme_codes = [r.status_code for r in answers["acme"]]
    globex_codes = [r.status_code for r in answers["globex"]]
    during = [
        globex_codes[i]
        for start, length in runs(acme_codes, 429)
        for i in range(start, start + length)
    ]
    assert 200 in during
    refused = next(r for r in answers["acme"] if r.status_code == 429)
    body = refused.json()
    assert (body["errorType"], body["policyName"]) == ("RATE_LIMIT", "TEN_SECONDLY_ROLLING")
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["X-HubSpot-RateLimit-Remaining"] == "0"
    counters = sandbox.counters()
    assert counters["faults_by_kind"]["rate_limit"] == total
    assert counters["rate_limited"] == 0  # injected, not enforced
    assert counters["rate_limited_by_account"] == {}
    assert counters["requests_by_account"] == {
        f"hubspot:{ACME_HUB_ID}": 80,
        f"hubspot:{GLOBEX_HUB_ID}": 80,
    }


def test_slow_answers_normally_after_slow_ms(sandbox: Sandbox) -> None:
    headers = bearer(sandbox.mint_token())
    sandbox.faults(fault_rate=1.0, fault_mix={"slow": 1}, slow_ms=300)
    started = time.monotonic()
    answer = sandbox.http.get(contacts_url(sandbox), headers=headers)
    assert answer.status_code == 200
    assert time.monotonic() - started >= 0.3
    assert sandbox.counters()["faults_by_kind"]["slow"] == 1


def _find_contact(sandbox: Sandbox, headers: dict[str, str], write_id: str) -> list[str]:
    found = sandbox.http.post(
        contacts_url(sandbox) + "/search",
        headers=headers,
        json={
            "filterGroups": [
                {
                    "filters": [
                        {
                            "propertyName": "switchboard_write_id",
                            "operator": "EQ",
                            "value": write_id,
                        }
                    ]
                }
            ]
        },
    )
    assert found.status_code == 200, found.text
    return [r["id"] for r in found.json()["results"]]


def test_timeout_after_commits_the_write_and_timeout_does_not(sandbox: Sandbox) -> None:
    headers = bearer(sandbox.mint_token())
    lost, held = str(uuid.uuid4()), str(uuid.uuid4())
    sandbox.faults(timeout_after_next=1, timeout_seconds=30)
    with pytest.raises(httpx.ReadTimeout):
        sandbox.http.post(
            contacts_url(sandbox),
            headers=headers,
            json={"properties": {"email": "lost@example.com", "switchboard_write_id": lost}},
            timeout=0.5,
        )
    sandbox.faults(timeout_next=1, timeout_seconds=30)
    with pytest.raises(httpx.ReadTimeout):
        sandbox.http.post(
            contacts_url(sandbox),
            headers=headers,
            json={"properties": {"email": "held@example.com", "switchboard_write_id": held}},
            timeout=0.5,
        )
    assert len(_find_contact(sandbox, headers, lost)) == 1  # the uncertain write happened
    assert _find_contact(sandbox, headers, held) == []  # held before the handler: nothing
    by_kind = sandbox.counters()["faults_by_kind"]
    assert (by_kind["timeout_after"], by_kind["timeout"]) == (1, 1)


def test_drawn_timeout_after_is_an_uncertain_write(sandbox: Sandbox) -> None:
    headers = bearer(sandbox.mint_token())
    write_id = str(uuid.uuid4())
    sandbox.faults(fault_rate=1.0, fault_mix={"timeout_after": 1}, timeout_seconds=30)
    with pytest.raises(httpx.ReadTimeout):
        sandbox.http.post(
            contacts_url(sandbox),
            headers=headers,
            json={"properties": {"switchboard_write_id": write_id}},
            timeout=0.5,
        )
    sandbox.faults()
    assert len(_find_contact(sandbox, headers, write_id)) == 1


def test_faults_never_touch_oauth_or_the_control_api(sandbox: Sandbox) -> None:
    sandbox.faults(fault_rate=1.0, fault_mix={"fail": 1, "timeout": 1})
    tokens = sandbox.mint_token()  # the control API
    refreshed = sandbox.http.post(
        f"{sandbox.hubspot_api_url}/oauth/v1/token",
        data={
            "grant_type": "refresh_token",
            "client_id": "sandbox-hubspot-client",
            "client_secret": "sandbox-hubspot-secret",
            "refresh_token": tokens["refresh_token"],
        },
    )
    assert refreshed.status_code == 200
    info = sandbox.http.get(
        f"{sandbox.hubspot_api_url}/oauth/v1/access-tokens/{tokens['access_token']}"
    )
    assert info.status_code == 200
    assert sandbox.counters()["faults_injected"] == 0


@pytest.mark.parametrize(
    "body",
    [
        {"fault_rate": 1.5},
        {"fault_rate": "0.2"},
        {"fault_mix": {"explode": 1}},
        {"fault_mix": {"fail": 0}},
        {"fault_mix": {"fail": -1}},
        {"seed": "abc"},
        {"slow_ms": -1},
        {"timeout_after_next": -1},
        {"burst": 1.5},
        {"fault_rat": 0.2},
    ],
)
def test_fault_settings_are_checked(sandbox: Sandbox, body: dict[str, Any]) -> None:
    answer = sandbox.http.post(f"{sandbox.url}/_sandbox/faults", json=body)
    assert answer.status_code == 400
    assert "error" in answer.json()


# --- Salesforce --------------------------------------------------------------------------------


def sf_get(sandbox: Sandbox, token: str, path: str, **kw: Any) -> requests.Response:
    session = sandbox.sf_session()
    return session.get(
        f"{sandbox.sf_instance_url}{DATA}{path}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=kw.pop("timeout", 10),
        **kw,
    )


def test_salesforce_drawn_faults_and_counters(sandbox: Sandbox) -> None:
    token = sandbox.sf_mint_token()["access_token"]
    sandbox.faults(fault_rate=0.5, fault_mix={"fail": 1, "rate_limit": 1}, burst=0, seed=3)
    answers = [
        sf_get(sandbox, token, "/query", params={"q": "SELECT Id FROM Contact"}) for _ in range(40)
    ]
    codes = [a.status_code for a in answers]
    assert set(codes) <= {200, 403, 500, 502, 503}
    assert 403 in codes
    assert any(code >= 500 for code in codes)
    refused = next(a for a in answers if a.status_code == 403)
    assert refused.json() == [
        {
            "message": "ConcurrentPerOrgLongTxn Limit exceeded.",
            "errorCode": "REQUEST_LIMIT_EXCEEDED",
        }
    ]
    failed = next(a for a in answers if a.status_code >= 500)
    assert failed.json()[0]["errorCode"] in ("UNKNOWN_EXCEPTION", "SERVER_UNAVAILABLE")
    assert failed.headers["Sforce-Limit-Info"].startswith("api-usage=")
    counters = sandbox.counters()
    assert counters["faults_injected"] == sum(1 for code in codes if code != 200)
    assert counters["faults_by_kind"]["rate_limit"] == codes.count(403)
    assert counters["rate_limited"] == 0
    assert counters["requests_by_account"] == {"salesforce:acme": 40}


def test_salesforce_timeout_after_commits_the_create(sandbox: Sandbox) -> None:
    sf = sandbox.sf_client()
    sandbox.faults(timeout_after_next=1, timeout_seconds=30)
    with pytest.raises(requests.exceptions.ReadTimeout):
        sf.session.post(
            f"{sandbox.sf_instance_url}{DATA}/sobjects/Contact",
            json={"LastName": "Uncertain", "Switchboard_Write_Id__c": "w-1"},
            headers={"Authorization": f"Bearer {sf.session_id}"},
            timeout=0.5,
        )
    rows = sf.query("SELECT Id, LastName FROM Contact WHERE Switchboard_Write_Id__c = 'w-1'")
    assert [r["LastName"] for r in rows["records"]] == ["Uncertain"]
    assert sandbox.counters()["faults_by_kind"]["timeout_after"] == 1


def test_oauth_faults_replace_one_answer_each_then_the_real_endpoint_answers(
    sandbox: Sandbox,
) -> None:
    control = f"{sandbox.url}/_sandbox/oauth-faults"
    assert sandbox.http.get(control).json() == {"token": [], "identity": []}
    refusals: list[dict[str, Any]] = [{"token": ["garbage"]}, {"token": "html"}, {"tokens": []}]
    for refused in refusals:
        assert sandbox.http.post(control, json=refused).status_code == 400, refused
    queued = {"token": ["html", "server_error"], "identity": ["not_json"]}
    assert sandbox.http.post(control, json=queued).json() == queued
    code = sandbox.authorize_code()
    html = sandbox.exchange_code(code)
    assert (html.status_code, html.headers["content-type"]) == (200, "text/html; charset=utf-8")
    failed = sandbox.sf_exchange_code(sandbox.sf_authorize_code())  # the other provider's turn
    assert failed.status_code == 500
    assert failed.json() == {"error": "unknown_error", "error_description": "retry your request"}
    token = sandbox.exchange_code(code)  # the code was not spent by the faulted answer
    assert token.status_code == 200
    access = token.json()["access_token"]
    info = f"{sandbox.hubspot_api_url}/oauth/v1/access-tokens/{access}"
    cut = sandbox.http.get(info)
    assert cut.status_code == 200
    with pytest.raises(ValueError, match=r"Expecting|Unterminated"):
        cut.json()
    assert sandbox.http.get(info).json()["hub_id"] == ACME_HUB_ID
    assert sandbox.http.get(control).json() == {"token": [], "identity": []}
    sandbox.http.post(control, json={"identity": ["wrong_shape"]})
    sandbox.reset()
    assert sandbox.http.get(control).json() == {"token": [], "identity": []}
