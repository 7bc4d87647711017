"""What an incremental HubSpot sync relies on, over HTTP: modification times, search windows and
sorts, the 10,000-result cap, archived listings, ``switchboard_write_id``, bulk seeding and stats.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pytest
from hubspot import HubSpot
from hubspot.crm.contacts import PublicObjectSearchRequest
from urllib3.util.retry import Retry

from tests.sandbox_fixtures import ACME_HUB_ID, GLOBEX_HUB_ID, Sandbox

pytestmark = pytest.mark.live


def bearer(token: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {token['access_token']}"}


def url(sandbox: Sandbox, object_type: str, suffix: str = "") -> str:
    return f"{sandbox.hubspot_api_url}/crm/v3/objects/{object_type}{suffix}"


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000 + 0.5)


def search(
    sandbox: Sandbox, headers: dict[str, str], object_type: str, body: dict[str, Any]
) -> dict[str, Any]:
    answer = sandbox.http.post(url(sandbox, object_type, "/search"), headers=headers, json=body)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def window(prop: str, operator: str, value: Any, high: Any = None) -> dict[str, Any]:
    item: dict[str, Any] = {"propertyName": prop, "operator": operator, "value": value}
    if high is not None:
        item["highValue"] = high
    return {"filterGroups": [{"filters": [item]}]}


ASCENDING = [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}]


@pytest.fixture
def headers(sandbox: Sandbox) -> dict[str, str]:
    sandbox.limits(search_per_second=0, per_10s=10_000)
    return bearer(sandbox.mint_token())


def test_every_write_takes_a_strictly_later_modification_time(
    sandbox: Sandbox, headers: dict[str, str]
) -> None:
    made = sandbox.http.post(
        url(sandbox, "contacts", "/batch/create"),
        headers=headers,
        json={"inputs": [{"properties": {"email": f"c{n}@example.com"}} for n in range(5)]},
    ).json()["results"]
    stamps = [r["updatedAt"] for r in made]
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == 5  # one batch, five distinct milliseconds
    for record in made:
        props = record["properties"]
        assert props["lastmodifieddate"] == props["hs_lastmodifieddate"] == record["updatedAt"]
        assert props["createdate"] == record["createdAt"]
        assert record["updatedAt"].endswith("Z")
        assert len(record["updatedAt"]) == len("2026-01-01T00:00:00.000Z")
    updated = sandbox.http.patch(
        url(sandbox, "contacts", f"/{made[0]['id']}"),
        headers=headers,
        json={"properties": {"firstname": "Later"}},
    ).json()
    assert updated["updatedAt"] > stamps[-1]
    assert updated["properties"]["hs_lastmodifieddate"] == updated["updatedAt"]
    assert updated["createdAt"] == made[0]["createdAt"]
    deal = sandbox.http.post(
        url(sandbox, "deals"), headers=headers, json={"properties": {"dealname": "D"}}
    ).json()
    assert deal["updatedAt"] > updated["updatedAt"]  # one clock per portal, across types
    assert "lastmodifieddate" not in deal["properties"]
    assert deal["properties"]["hs_lastmodifieddate"] == deal["updatedAt"]


def test_search_windows_on_modification_and_creation_dates(
    sandbox: Sandbox, headers: dict[str, str]
) -> None:
    made = sandbox.http.post(
        url(sandbox, "companies", "/batch/create"),
        headers=headers,
        json={"inputs": [{"properties": {"name": f"Co {n}"}} for n in range(6)]},
    ).json()["results"]
    ids = [r["id"] for r in made]
    stamps = [r["updatedAt"] for r in made]
    third = ms(stamps[2])
    cases: list[tuple[dict[str, Any], list[str]]] = [
        (window("hs_lastmodifieddate", "GTE", str(third)), ids[2:]),
        (window("hs_lastmodifieddate", "GT", stamps[2]), ids[3:]),  # an ISO string
        (window("hs_lastmodifieddate", "LT", str(third)), ids[:2]),
        (window("hs_lastmodifieddate", "LTE", stamps[2]), ids[:3]),
        (window("hs_lastmodifieddate", "BETWEEN", str(third), str(ms(stamps[4]))), ids[2:5]),
        (window("createdate", "GTE", stamps[5]), ids[5:]),
        (window("hs_lastmodifieddate", "EQ", str(third)), [ids[2]]),
    ]
    for body, expected in cases:
        found = search(sandbox, headers, "companies", body | {"sorts": ASCENDING, "limit": 100})
        assert [r["id"] for r in found["results"]] == expected, body
        assert found["total"] == len(expected)
    newest_first = search(
        sandbox,
        headers,
        "companies",
        {"sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "DESCENDING"}]},
    )
    assert [r["id"] for r in newest_first["results"]] == ids[::-1]
    sandbox.http.patch(
        url(sandbox, "companies", f"/{ids[0]}"),
        headers=headers,
        json={"properties": {"city": "Leeds"}},
    )
    since = search(
        sandbox,
        headers,
        "companies",
        window("hs_lastmodifieddate", "GT", stamps[-1]) | {"sorts": ASCENDING},
    )
    assert [r["id"] for r in since["results"]] == [ids[0]]  # the update moved it to the end


def test_contacts_search_on_lastmodifieddate_too(sandbox: Sandbox, headers: dict[str, str]) -> None:
    first = sandbox.http.post(
        url(sandbox, "contacts"), headers=headers, json={"properties": {"firstname": "A"}}
    ).json()
    second = sandbox.http.post(
        url(sandbox, "contacts"), headers=headers, json={"properties": {"firstname": "B"}}
    ).json()
    for prop in ("lastmodifieddate", "hs_lastmodifieddate"):
        found = search(
            sandbox,
            headers,
            "contacts",
            window(prop, "GT", str(ms(first["updatedAt"])))
            | {"sorts": [{"propertyName": prop, "direction": "ASCENDING"}]},
        )
        assert [r["id"] for r in found["results"]] == [second["id"]]


def test_ties_are_broken_by_id_in_both_directions(
    sandbox: Sandbox, headers: dict[str, str]
) -> None:
    stages = ["qualifiedtobuy", "closedwon", "qualifiedtobuy", "closedwon", "qualifiedtobuy"]
    made = sandbox.http.post(
        url(sandbox, "deals", "/batch/create"),
        headers=headers,
        json={"inputs": [{"properties": {"dealname": "x", "dealstage": s}} for s in stages]},
    ).json()["results"]
    ids = [r["id"] for r in made]
    up = search(
        sandbox,
        headers,
        "deals",
        {"sorts": [{"propertyName": "dealstage", "direction": "ASCENDING"}]},
    )
    assert [r["id"] for r in up["results"]] == [ids[1], ids[3], ids[0], ids[2], ids[4]]
    down = search(sandbox, headers, "deals", {"sorts": ["-dealstage"]})
    assert [r["id"] for r in down["results"]] == [ids[0], ids[2], ids[4], ids[1], ids[3]]


def test_the_search_sdk_reads_a_modification_window(
    sandbox: Sandbox, headers: dict[str, str]
) -> None:
    made = sandbox.http.post(
        url(sandbox, "contacts", "/batch/create"),
        headers=headers,
        json={"inputs": [{"properties": {"firstname": f"S{n}"}} for n in range(3)]},
    ).json()["results"]
    client = HubSpot(
        access_token=headers["Authorization"].split()[1],
        host=sandbox.hubspot_api_url,
        retry=Retry(total=0),
    )
    page = client.crm.contacts.search_api.do_search(
        public_object_search_request=PublicObjectSearchRequest(
            filter_groups=[
                {
                    "filters": [
                        {
                            "propertyName": "hs_lastmodifieddate",
                            "operator": "GTE",
                            "value": str(ms(made[1]["updatedAt"])),
                        }
                    ]
                }
            ],
            sorts=ASCENDING,
            properties=["firstname", "hs_lastmodifieddate"],
            limit=1,
        )
    )
    assert page.total == 2
    assert [r.id for r in page.results] == [made[1]["id"]]
    assert page.results[0].updated_at == datetime.fromisoformat(
        made[1]["updatedAt"].replace("Z", "+00:00")
    )
    assert page.paging.next.after == "1"


def test_archived_records_list_with_archived_at(sandbox: Sandbox, headers: dict[str, str]) -> None:
    made = sandbox.http.post(
        url(sandbox, "deals", "/batch/create"),
        headers=headers,
        json={"inputs": [{"properties": {"dealname": f"D{n}"}} for n in range(4)]},
    ).json()["results"]
    ids = [r["id"] for r in made]
    sandbox.http.delete(url(sandbox, "deals", f"/{ids[1]}"), headers=headers)
    sandbox.http.post(
        url(sandbox, "deals", "/batch/archive"), headers=headers, json={"inputs": [{"id": ids[3]}]}
    )
    listed = sandbox.http.get(
        url(sandbox, "deals"), headers=headers, params={"archived": "true", "limit": 1}
    ).json()
    assert [r["id"] for r in listed["results"]] == [ids[1]]
    assert listed["results"][0]["archived"] is True
    archived_at = listed["results"][0]["archivedAt"]
    assert archived_at > made[-1]["updatedAt"]
    rest = sandbox.http.get(
        url(sandbox, "deals"),
        headers=headers,
        params={"archived": "true", "after": listed["paging"]["next"]["after"]},
    ).json()
    assert [r["id"] for r in rest["results"]] == [ids[3]]
    assert rest["results"][0]["archivedAt"] > archived_at
    assert "paging" not in rest
    live = sandbox.http.get(url(sandbox, "deals"), headers=headers).json()
    assert [r["id"] for r in live["results"]] == [ids[0], ids[2]]
    assert all(r["archived"] is False and "archivedAt" not in r for r in live["results"])
    assert sandbox.hubspot_stats(object_type="deals") == {
        "hub_id": ACME_HUB_ID,
        "object_type": "deals",
        "live": 2,
        "archived": 2,
        "duplicates": {"dealname": 0, "switchboard_write_id": 0},
    }


@pytest.mark.parametrize("object_type", ["contacts", "companies", "deals"])
@pytest.mark.parametrize("hub_id", [ACME_HUB_ID, GLOBEX_HUB_ID])
def test_switchboard_write_id_exists_and_is_searchable(
    sandbox: Sandbox, object_type: str, hub_id: int
) -> None:
    headers = bearer(sandbox.mint_token(hub_id))
    for n, write_id in enumerate(("w-1", "w-2", "w-1")):
        made = sandbox.http.post(
            url(sandbox, object_type),
            headers=headers,
            json={"properties": {"switchboard_write_id": write_id, "hubspot_owner_id": str(n)}},
        )
        assert made.status_code == 201, made.text
        assert made.json()["properties"]["switchboard_write_id"] == write_id
    found = search(
        sandbox,
        headers,
        object_type,
        window("switchboard_write_id", "EQ", "w-1") | {"properties": ["switchboard_write_id"]},
    )
    assert found["total"] == 2
    assert {r["properties"]["switchboard_write_id"] for r in found["results"]} == {"w-1"}
    stats = sandbox.hubspot_stats(hub_id=hub_id, object_type=object_type)
    assert stats["live"] == 3
    assert stats["duplicates"]["switchboard_write_id"] == 1


def test_search_is_charged_to_the_search_window_and_every_answer_has_limit_headers(
    sandbox: Sandbox,
) -> None:
    sandbox.limits(search_per_second=2)
    headers = bearer(sandbox.mint_token())
    answers = [
        sandbox.http.post(url(sandbox, "contacts", "/search"), headers=headers, json={})
        for _ in range(3)
    ]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].json()["policyName"] == "SECONDLY"
    others = [
        sandbox.http.get(url(sandbox, "contacts"), headers=headers),
        sandbox.http.get(url(sandbox, "contacts", "/999999"), headers=headers),
        sandbox.http.post(url(sandbox, "contacts"), headers=headers, json={"properties": {"x": 1}}),
    ]
    assert [a.status_code for a in others] == [200, 404, 400]
    for answer in answers + others:
        assert answer.headers["X-HubSpot-RateLimit-Max"] == "110"
        assert answer.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
        assert int(answer.headers["X-HubSpot-RateLimit-Remaining"]) >= 0
    counters = sandbox.counters()
    assert counters["rate_limited"] == 1
    assert counters["rate_limited_by_account"] == {f"hubspot:{ACME_HUB_ID}": 1}


# --- Bulk seeding ------------------------------------------------------------------------------


def test_seed_50000_contacts_fast_and_sync_them_through_search(
    sandbox: Sandbox, headers: dict[str, str]
) -> None:
    started = time.monotonic()
    seeded = sandbox.hubspot_seed(50_000, prefix="bulk")
    assert time.monotonic() - started < 10
    assert seeded["created"] == 50_000
    first, last = (int(i) for i in seeded["ids"])
    assert last - first == 49_999
    assert sandbox.hubspot_stats() == {
        "hub_id": ACME_HUB_ID,
        "object_type": "contacts",
        "live": 50_000,
        "archived": 0,
        "duplicates": {"email": 0, "switchboard_write_id": 0},
    }
    one = sandbox.http.get(url(sandbox, "contacts", f"/{seeded['ids'][1]}"), headers=headers).json()
    assert one["properties"]["email"] == "bulk-50000@example.com"
    assert ms(one["updatedAt"]) <= time.time() * 1000 + 1000  # spread into the past
    # An incremental read: windows of at most 10,000 on hs_lastmodifieddate, 200 a page.
    seen: set[str] = set()
    cursor, pages, slowest = "0", 0, 0.0
    while True:
        after: str | None = None
        last_stamp = None
        while True:
            body = window("hs_lastmodifieddate", "GT", cursor) | {
                "sorts": ASCENDING,
                "limit": 200,
                "properties": ["email"],
            }
            if after is not None:
                body["after"] = after
            began = time.monotonic()
            page = search(sandbox, headers, "contacts", body)
            slowest = max(slowest, time.monotonic() - began)
            pages += 1
            for record in page["results"]:
                seen.add(record["id"])
                last_stamp = record["properties"]["lastmodifieddate"]
            after = (page.get("paging") or {}).get("next", {}).get("after")
            if after is None or int(after) >= 10_000:
                break
        if last_stamp is None:
            break
        cursor = str(ms(last_stamp))
    assert len(seen) == 50_000
    assert pages <= 260
    assert slowest < 1.0  # a search over 50,000 contacts stays quick
    email = sandbox.http.post(
        url(sandbox, "contacts"),
        headers=headers,
        json={"properties": {"email": "bulk-7@example.com"}},
    )
    assert email.status_code == 409  # seeded emails are unique like any other
    listed = sandbox.http.get(
        url(sandbox, "contacts"), headers=headers, params={"after": seeded["ids"][1], "limit": 5}
    ).json()
    assert [r["id"] for r in listed["results"]] == [seeded["ids"][1]]


def test_the_10000_result_cap_on_a_seeded_portal(sandbox: Sandbox, headers: dict[str, str]) -> None:
    sandbox.hubspot_seed(10_100, object_type="companies")
    body: dict[str, Any] = {"sorts": ASCENDING, "limit": 200, "after": "9900"}
    page = search(sandbox, headers, "companies", body)
    assert page["total"] == 10_100
    assert len(page["results"]) == 100
    assert page["paging"]["next"]["after"] == "10000"
    beyond = sandbox.http.post(
        url(sandbox, "companies", "/search"), headers=headers, json=body | {"after": "10000"}
    )
    assert beyond.status_code == 400
    assert beyond.json()["category"] == "VALIDATION_ERROR"


def test_seed_spreads_modification_times_and_checks_its_input(sandbox: Sandbox) -> None:
    headers = bearer(sandbox.mint_token(GLOBEX_HUB_ID))
    before = time.time() * 1000
    seeded = sandbox.hubspot_seed(3, hub_id=GLOBEX_HUB_ID, object_type="deals", prefix="q")
    records = sandbox.http.post(
        url(sandbox, "deals", "/batch/read"),
        headers=headers,
        json={
            "inputs": [{"id": i} for i in range(int(seeded["ids"][0]), int(seeded["ids"][1]) + 1)],
            "properties": ["dealname", "hs_lastmodifieddate"],
        },
    ).json()["results"]
    stamps = [ms(r["updatedAt"]) for r in records]
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == 3
    assert stamps[-1] >= before - 5_000
    assert sorted(r["properties"]["dealname"] for r in records) == [
        "q deal 1",
        "q deal 2",
        "q deal 3",
    ]
    after = sandbox.http.post(
        url(sandbox, "deals"), headers=headers, json={"properties": {"dealname": "later"}}
    ).json()
    assert ms(after["updatedAt"]) > stamps[-1]
    base = f"{sandbox.url}/_sandbox/hubspot"
    bad: list[dict[str, Any]] = [
        {"hub_id": ACME_HUB_ID, "object_type": "tickets", "count": 1},
        {"hub_id": ACME_HUB_ID, "object_type": "contacts", "count": 0},
        {"hub_id": ACME_HUB_ID, "object_type": "contacts", "count": 1, "prefix": "a b"},
        {"hub_id": ACME_HUB_ID, "object_type": "contacts", "count": 1, "colour": "red"},
    ]
    for body in bad:
        assert sandbox.http.post(f"{base}/seed", json=body).status_code == 400, body
    assert sandbox.http.post(f"{base}/seed", json={"hub_id": 1, "count": 1}).status_code == 404
    sandbox.hubspot_seed(2, prefix="dup")
    again = sandbox.http.post(
        f"{base}/seed", json={"hub_id": ACME_HUB_ID, "count": 2, "prefix": "dup", "start": 2}
    )
    assert again.status_code == 400
    assert "dup-2@example.com" in again.json()["error"]
    assert sandbox.hubspot_seed(2, prefix="dup", start=3)["created"] == 2
    assert sandbox.hubspot_stats()["live"] == 4


def test_touch_gives_records_new_modification_times_in_the_past(
    sandbox: Sandbox, headers: dict[str, str]
) -> None:
    seeded = sandbox.hubspot_seed(300, prefix="t")
    first = int(seeded["ids"][0])
    base = f"{sandbox.url}/_sandbox/hubspot"
    time.sleep(1.5)  # the seeded times end about now: let them fall behind
    before = time.time() * 1000
    touched = sandbox.http.post(
        f"{base}/touch",
        json={"hub_id": ACME_HUB_ID, "object_type": "contacts", "count": 250, "start": 20},
    )
    assert touched.status_code == 200, touched.text
    assert touched.json() == {"touched": 250, "ids": [str(first + 20), str(first + 269)]}
    # The touched ones, and only they, are the newest: a search from just before finds them in
    # id order, stamped a millisecond apart and none ahead of the clock.
    body: dict[str, Any] = window("lastmodifieddate", "GTE", str(int(before) - 500))
    page = search(sandbox, headers, "contacts", body | {"sorts": ASCENDING, "limit": 200})
    assert page["total"] == 250
    found = page["results"]
    assert [int(r["id"]) for r in found] == list(range(first + 20, first + 220))
    stamps = [ms(r["updatedAt"]) for r in found]
    assert stamps == [stamps[0] + i for i in range(200)]
    assert stamps[-1] <= time.time() * 1000
    assert found[0]["properties"]["lastmodifieddate"] == found[0]["updatedAt"]
    assert found[0]["properties"]["email"] == "t-21@example.com"  # nothing else changed
    # Asking for more than there are is refused, and nothing is touched.
    too_many = {"hub_id": ACME_HUB_ID, "object_type": "contacts", "count": 10, "start": 295}
    assert sandbox.http.post(f"{base}/touch", json=too_many).status_code == 400
    assert sandbox.http.post(f"{base}/touch", json={"count": 1, "colour": "red"}).status_code == 400
