"""What an incremental Salesforce sync relies on, over HTTP: SystemModstamp and LastModifiedDate,
queryAll and the recycle bin, SOQL windows with a keyset on (SystemModstamp, Id), the External ID
field ``Switchboard_Write_Id__c``, bulk seeding and stats."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest

from tests.sandbox_fixtures import Sandbox

pytestmark = pytest.mark.live

FIELDS = "Id, LastName, IsDeleted, LastModifiedDate, SystemModstamp"


def moment(value: str) -> datetime:
    """A Salesforce datetime (``2026-01-01T00:00:00.000+0000``)."""
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z")


def literal(value: str) -> str:
    """The unquoted SOQL datetime literal for a stored value."""
    return moment(value).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + value[20:23] + "Z"


def rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "attributes"} for r in result["records"]]


def test_modstamps_grow_strictly_on_create_update_and_delete(sandbox: Sandbox) -> None:
    sf = sandbox.sf_client()
    made = sf.restful(
        "composite/sobjects",
        method="POST",
        json={
            "allOrNone": True,
            "records": [{"attributes": {"type": "Contact"}, "LastName": f"C{n}"} for n in range(4)],
        },
    )
    ids = [r["id"] for r in made]
    created = rows(sf.query(f"SELECT {FIELDS} FROM Contact ORDER BY SystemModstamp"))  # noqa: S608
    assert [r["Id"] for r in created] == ids
    stamps = [r["SystemModstamp"] for r in created]
    assert len(set(stamps)) == 4
    assert all(r["LastModifiedDate"] == r["SystemModstamp"] for r in created)
    sf.Contact.update(ids[0], {"Title": "Later"})
    sf.Contact.delete(ids[1])
    everything = sf.query_all(f"SELECT {FIELDS} FROM Contact", include_deleted=True)  # noqa: S608
    after = {r["Id"]: r for r in rows(everything)}
    updated, deleted = after[ids[0]], after[ids[1]]
    assert updated["SystemModstamp"] > stamps[-1]
    assert deleted["SystemModstamp"] > updated["SystemModstamp"]
    assert deleted["LastModifiedDate"] == deleted["SystemModstamp"]
    assert deleted["IsDeleted"] is True
    assert moment(deleted["SystemModstamp"]) > moment(updated["SystemModstamp"])


def test_query_hides_deleted_rows_and_query_all_shows_them(sandbox: Sandbox) -> None:
    sf = sandbox.sf_client()
    kept = sf.Account.create({"Name": "Kept"})["id"]
    gone = sf.Account.create({"Name": "Gone"})["id"]
    child = sf.Contact.create({"LastName": "Child", "AccountId": gone})["id"]
    sf.Account.delete(gone)
    assert [r["Id"] for r in sf.query("SELECT Id FROM Account")["records"]] == [kept]
    everything = sf.query_all("SELECT Id, IsDeleted FROM Account ORDER BY Id", include_deleted=True)
    assert [(r["Id"], r["IsDeleted"]) for r in everything["records"]] == [
        (kept, False),
        (gone, True),
    ]
    cascaded = sf.query_all("SELECT Id, IsDeleted FROM Contact", include_deleted=True)["records"]
    assert [(r["Id"], r["IsDeleted"]) for r in cascaded] == [(child, True)]
    only_deleted = sf.query_all(
        "SELECT Id FROM Account WHERE IsDeleted = TRUE", include_deleted=True
    )
    assert [r["Id"] for r in only_deleted["records"]] == [gone]
    assert sandbox.sf_stats(sobject="Account")["deleted"] == 1
    assert sandbox.sf_empty_recycle_bin("acme") == 2
    emptied = sf.query_all("SELECT Id FROM Account", include_deleted=True)["records"]
    assert [r["Id"] for r in emptied] == [kept]


def test_a_keyset_window_on_systemmodstamp_and_id(sandbox: Sandbox) -> None:
    sf = sandbox.sf_client()
    ids = [sf.Contact.create({"LastName": f"K{n}"})["id"] for n in range(5)]
    stamps = {
        r["Id"]: r["SystemModstamp"]
        for r in sf.query("SELECT Id, SystemModstamp FROM Contact")["records"]
    }
    cut = stamps[ids[1]]
    newer = sf.query(
        f"SELECT Id FROM Contact WHERE SystemModstamp > {literal(cut)} "  # noqa: S608
        "ORDER BY SystemModstamp ASC, Id ASC LIMIT 2"
    )
    assert [r["Id"] for r in newer["records"]] == ids[2:4]
    keyset = sf.query(
        f"SELECT Id FROM Contact WHERE (SystemModstamp = {literal(cut)} AND Id > '{ids[0]}') "  # noqa: S608
        f"OR SystemModstamp > {literal(cut)} ORDER BY SystemModstamp ASC, Id ASC"
    )
    assert [r["Id"] for r in keyset["records"]] == ids[1:]
    since = sf.query(
        f"SELECT Id FROM Contact WHERE SystemModstamp >= {literal(cut)} AND LastName != 'K4' "  # noqa: S608
        "ORDER BY SystemModstamp DESC"
    )
    assert [r["Id"] for r in since["records"]] == [ids[3], ids[2], ids[1]]
    with pytest.raises(SalesforceMalformedRequest) as quoted:
        sf.query(f"SELECT Id FROM Contact WHERE SystemModstamp > '{literal(cut)}'")  # noqa: S608
    problem: Any = quoted.value.content
    assert problem[0]["errorCode"] == "INVALID_QUERY_FILTER_OPERATOR"


def test_the_write_id_external_id_field(sandbox: Sandbox) -> None:
    sf = sandbox.sf_client()
    for sobject in ("Contact", "Account", "Opportunity"):
        described = getattr(sf, sobject).describe()
        spec = next(f for f in described["fields"] if f["name"] == "Switchboard_Write_Id__c")
        assert (spec["externalId"], spec["custom"], spec["filterable"], spec["idLookup"]) == (
            True,
            True,
            True,
            True,
        )
        assert (spec["type"], spec["length"], spec["nillable"]) == ("string", 255, True)
    account = sf.Account.create({"Name": "Tagged", "Switchboard_Write_Id__c": "w-acc"})["id"]
    sf.Opportunity.create(
        {
            "Name": "Tagged deal",
            "StageName": "Prospecting",
            "CloseDate": "2030-01-01",
            "AccountId": account,
            "Switchboard_Write_Id__c": "w-opp",
        }
    )
    sf.Contact.create({"LastName": "One", "Switchboard_Write_Id__c": "w-1"})
    sf.Contact.create({"LastName": "Twice", "Switchboard_Write_Id__c": "w-1"})
    found = sf.query("SELECT Id, Name FROM Account WHERE Switchboard_Write_Id__c = 'w-acc'")
    assert [r["Id"] for r in found["records"]] == [account]
    opp = sf.query("SELECT Name FROM Opportunity WHERE Switchboard_Write_Id__c IN ('w-opp')")
    assert [r["Name"] for r in opp["records"]] == ["Tagged deal"]
    assert sandbox.sf_stats()["duplicates"] == {"Email": 0, "Switchboard_Write_Id__c": 1}


def test_seed_50000_contacts_and_read_them_incrementally(sandbox: Sandbox) -> None:
    started = time.monotonic()
    seeded = sandbox.sf_seed(50_000, prefix="bulk")
    assert time.monotonic() - started < 10
    assert seeded["created"] == 50_000
    assert seeded["ids"][0].startswith("003")
    assert sandbox.sf_stats() == {
        "org": "acme",
        "sobject": "Contact",
        "live": 50_000,
        "deleted": 0,
        "archived": 0,
        "duplicates": {"Email": 0, "Switchboard_Write_Id__c": 0},
    }
    sf = sandbox.sf_client()
    last = sf.Contact.get(seeded["ids"][1])
    assert (last["Email"], last["Name"]) == ("bulk-50000@example.com", "Bulk Contact 50000")
    seen: set[str] = set()
    cursor = "1970-01-01T00:00:00.000Z"
    began = time.monotonic()
    while True:
        batch = sf.query(
            f"SELECT Id, SystemModstamp FROM Contact WHERE SystemModstamp > {cursor} "  # noqa: S608
            "ORDER BY SystemModstamp ASC, Id ASC LIMIT 10000"
        )["records"]
        if not batch:
            break
        seen.update(r["Id"] for r in batch)
        cursor = literal(batch[-1]["SystemModstamp"])
    assert len(seen) == 50_000
    assert time.monotonic() - began < 20
    globex = sandbox.sf_seed(3, org="globex", sobject="Opportunity", prefix="g")
    opp = sandbox.sf_client(org="globex").Opportunity.get(globex["ids"][0])
    assert (opp["Name"], opp["StageName"], opp["IsClosed"]) == (
        "g opportunity 1",
        "Prospecting",
        False,
    )
    base = f"{sandbox.url}/_sandbox/salesforce"
    assert (
        sandbox.http.post(f"{base}/seed", json={"sobject": "Lead", "count": 1}).status_code == 400
    )
    assert sandbox.http.post(f"{base}/seed", json={"org": "initech", "count": 1}).status_code == 404
    assert sandbox.http.post(f"{base}/seed", json={"count": 0}).status_code == 400
    assert sandbox.http.get(f"{base}/stats", params={"sobject": "Organization"}).status_code == 400
