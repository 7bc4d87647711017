"""The sandboxes' notes and tasks, spoken to as the providers document them: HubSpot's ``notes``
and ``tasks`` objects through the official SDK (required ``hs_timestamp``, contacts scopes,
create-body associations, v4 association reads, Last Activity Date), Salesforce's ``Task`` and
``Note`` sObjects through simple-salesforce (describe, derived fields, ``LastActivityDate``),
and the pure mappings behind the clients.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
from hubspot.crm.objects import notes as notes_sdk
from hubspot.crm.objects import tasks as tasks_sdk
from simple_salesforce.exceptions import SalesforceMalformedRequest

from core.errors import ValidationFailed
from integrations.providers.base import activity_input
from integrations.providers.hubspot.activities import activity_properties
from integrations.providers.hubspot.activities import to_activity as hubspot_activity
from integrations.providers.hubspot.wire import HubSpotObject
from integrations.providers.salesforce.activities import activity_fields, title_of
from integrations.providers.salesforce.activities import to_activity as salesforce_activity
from integrations.providers.unified import NoteIn, Task, TaskIn
from tests.integrations.test_sandbox_hubspot import api, bearer, sdk
from tests.sandbox_fixtures import Sandbox

pytestmark = pytest.mark.live

NOTE_TO_DEAL, TASK_TO_CONTACT = 214, 204


def hs_create(http: httpx.Client, sandbox: Sandbox, token: Any, path: str, body: Any) -> Any:
    response = http.post(api(sandbox, path), json=body, headers=bearer(token))
    return response


def error_code(error: SalesforceMalformedRequest) -> str:
    content: Any = error.content
    return str(content[0]["errorCode"])


def link(to_id: str, type_id: int) -> dict[str, Any]:
    spec = {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}
    return {"to": {"id": to_id}, "types": [spec]}


# --- HubSpot -----------------------------------------------------------------------------------


def test_hubspot_notes_and_tasks_through_the_sdk(sandbox: Sandbox) -> None:
    token = sandbox.mint_token()
    client = sdk(sandbox, token["access_token"])
    http = sandbox.http
    deal = hs_create(
        http, sandbox, token, "/crm/v3/objects/deals", {"properties": {"dealname": "D"}}
    )
    contact = hs_create(
        http, sandbox, token, "/crm/v3/objects/contacts", {"properties": {"email": "a@x.test"}}
    )
    deal_id, contact_id = deal.json()["id"], contact.json()["id"]
    before = http.get(
        api(sandbox, f"/crm/v3/objects/deals/{deal_id}?properties=notes_last_updated"),
        headers=bearer(token),
    ).json()

    note = client.crm.objects.notes.basic_api.create(
        notes_sdk.SimplePublicObjectInputForCreate(
            properties={"hs_note_body": "Met them", "hs_timestamp": "2024-06-30T10:00:00Z"},
            associations=[
                notes_sdk.PublicAssociationsForObject(
                    to=notes_sdk.PublicObjectId(id=deal_id),
                    types=[
                        notes_sdk.AssociationSpec(
                            association_category="HUBSPOT_DEFINED",
                            association_type_id=NOTE_TO_DEAL,
                        )
                    ],
                )
            ],
        )
    )
    assert note.properties["hs_note_body"] == "Met them"
    assert note.properties["hs_timestamp"] == "2024-06-30T10:00:00.000Z"
    assert "hs_createdate" in note.properties
    assert "createdate" not in note.properties
    read = client.crm.objects.notes.basic_api.get_by_id(note.id, associations=["deals"])
    assert [a.id for a in read.associations["deals"].results] == [deal_id]
    assert read.associations["deals"].results[0].type == "note_to_deal"
    assert sorted(read.properties) == ["hs_createdate", "hs_lastmodifieddate", "hs_object_id"]
    # Logging the note moved the deal's Last Activity Date and its modification date.
    after = http.get(
        api(sandbox, f"/crm/v3/objects/deals/{deal_id}?properties=notes_last_updated"),
        headers=bearer(token),
    ).json()
    assert before["properties"]["notes_last_updated"] is None
    assert after["properties"]["notes_last_updated"] == after["properties"]["hs_lastmodifieddate"]
    assert after["updatedAt"] > before["updatedAt"]

    task = client.crm.objects.tasks.basic_api.create(
        tasks_sdk.SimplePublicObjectInputForCreate(
            properties={
                "hs_task_subject": "Call back",
                "hs_task_status": "NOT_STARTED",
                "hs_task_priority": "HIGH",
                "hs_timestamp": "2030-01-15T12:00:00Z",
            },
            associations=[
                tasks_sdk.PublicAssociationsForObject(
                    to=tasks_sdk.PublicObjectId(id=contact_id),
                    types=[
                        tasks_sdk.AssociationSpec(
                            association_category="HUBSPOT_DEFINED",
                            association_type_id=TASK_TO_CONTACT,
                        )
                    ],
                )
            ],
        )
    )
    linked = client.crm.associations.v4.basic_api.get_page("contacts", contact_id, "tasks")
    assert [(r.to_object_id, r.association_types[0].type_id) for r in linked.results] == [
        (task.id, 203)
    ]
    found = client.crm.objects.tasks.search_api.do_search(
        tasks_sdk.PublicObjectSearchRequest(
            filter_groups=[
                tasks_sdk.FilterGroup(
                    filters=[
                        tasks_sdk.Filter(
                            property_name="hs_task_priority", operator="EQ", value="HIGH"
                        )
                    ]
                )
            ]
        )
    )
    assert [r.id for r in found.results] == [task.id]
    # Archived, it leaves the contact's associations.
    client.crm.objects.tasks.basic_api.archive(task.id)
    assert (
        client.crm.associations.v4.basic_api.get_page("contacts", contact_id, "tasks").results == []
    )


def test_hubspot_validates_activities_as_hubspot_does(sandbox: Sandbox) -> None:
    token = sandbox.mint_token()
    http = sandbox.http
    deal_id = hs_create(
        http, sandbox, token, "/crm/v3/objects/deals", {"properties": {"dealname": "D"}}
    ).json()["id"]

    untimed = hs_create(
        http, sandbox, token, "/crm/v3/objects/notes", {"properties": {"hs_note_body": "x"}}
    )
    assert untimed.status_code == 400
    body = untimed.json()
    assert body["category"] == "VALIDATION_ERROR"
    assert body["errors"][0]["code"] == "REQUIRED_PROPERTY"
    assert body["errors"][0]["context"] == {"propertyName": ["hs_timestamp"]}

    timed = {"hs_task_subject": "x", "hs_timestamp": "2030-01-01T00:00:00Z"}
    bad_status = hs_create(
        http,
        sandbox,
        token,
        "/crm/v3/objects/tasks",
        {"properties": timed | {"hs_task_status": "DONE"}},
    )
    assert bad_status.status_code == 400
    assert bad_status.json()["errors"][0]["code"] == "INVALID_OPTION"

    # A note-to-deal type on a task, and a note on a deal that does not exist.
    wrong_type = hs_create(
        http,
        sandbox,
        token,
        "/crm/v3/objects/tasks",
        {"properties": timed, "associations": [link(deal_id, NOTE_TO_DEAL)]},
    )
    assert wrong_type.status_code == 400
    missing = hs_create(
        http,
        sandbox,
        token,
        "/crm/v3/objects/notes",
        {
            "properties": {"hs_note_body": "x", "hs_timestamp": "0"},
            "associations": [link("999999", NOTE_TO_DEAL)],
        },
    )
    assert missing.status_code == 400
    assert sandbox.hubspot_stats(object_type="notes")["live"] == 0
    assert sandbox.hubspot_stats(object_type="tasks")["live"] == 0

    # Activities take the contacts scopes, whatever they are logged on.
    deals_only = sandbox.mint_token(
        scopes=["oauth", "crm.objects.deals.read", "crm.objects.deals.write"]
    )
    refused = hs_create(
        http,
        sandbox,
        deals_only,
        "/crm/v3/objects/notes",
        {"properties": {"hs_note_body": "x", "hs_timestamp": "0"}},
    )
    assert refused.status_code == 403
    assert refused.json()["errors"][0]["context"] == {
        "requiredGranularScopes": ["crm.objects.contacts.write"]
    }


def test_hubspot_batch_creates_activities_with_associations(sandbox: Sandbox) -> None:
    token = sandbox.mint_token()
    http = sandbox.http
    deal_id = hs_create(
        http, sandbox, token, "/crm/v3/objects/deals", {"properties": {"dealname": "D"}}
    ).json()["id"]
    inputs = [
        {
            "properties": {"hs_note_body": f"n{i}", "hs_timestamp": "0"},
            "associations": [link(deal_id, NOTE_TO_DEAL)],
            "objectWriteTraceId": str(i),
        }
        for i in range(2)
    ] + [{"properties": {"hs_note_body": "untimed"}, "objectWriteTraceId": "2"}]
    answer = hs_create(
        http, sandbox, token, "/crm/v3/objects/notes/batch/create", {"inputs": inputs}
    )
    assert answer.status_code == 207
    assert len(answer.json()["results"]) == 2
    assert answer.json()["errors"][0]["context"] == {"objectWriteTraceId": ["2"]}
    linked = http.get(
        api(sandbox, f"/crm/v4/objects/deals/{deal_id}/associations/notes"), headers=bearer(token)
    ).json()
    assert len(linked["results"]) == 2


# --- Salesforce --------------------------------------------------------------------------------


def test_salesforce_describes_task_and_note(sandbox: Sandbox) -> None:
    sf = sandbox.sf_client()
    task = {f["name"]: f for f in sf.Task.describe()["fields"]}
    assert task["WhatId"]["referenceTo"] == ["Account", "Opportunity"]
    assert task["WhatId"]["polymorphicForeignKey"] is True
    assert (task["Subject"]["type"], task["Status"]["defaultedOnCreate"]) == ("combobox", True)
    assert (task["AccountId"]["createable"], task["IsClosed"]["updateable"]) == (False, False)
    assert task["Switchboard_Write_Id__c"]["custom"] is True
    note = {f["name"]: f for f in sf.Note.describe()["fields"]}
    assert (note["ParentId"]["nillable"], note["ParentId"]["updateable"]) == (False, False)
    assert (note["Title"]["length"], note["Body"]["length"]) == (80, 32000)
    assert not any(f["custom"] for f in note.values())  # Note takes no custom fields
    deal = {f["name"]: f for f in sf.Opportunity.describe()["fields"]}
    assert (deal["LastActivityDate"]["type"], deal["LastActivityDate"]["createable"]) == (
        "date",
        False,
    )


def test_salesforce_tasks_derive_their_fields_and_log_activity(sandbox: Sandbox) -> None:
    sf = sandbox.sf_client()
    account = sf.Account.create({"Name": "Acme"})["id"]
    contact = sf.Contact.create({"LastName": "Lovelace", "AccountId": account})["id"]
    deal = sf.Opportunity.create(
        {"Name": "D", "StageName": "Prospecting", "CloseDate": "2030-01-31", "AccountId": account}
    )["id"]
    stamp = sf.Opportunity.get(deal)["SystemModstamp"]

    open_task = sf.Task.create({"Subject": "Call", "WhatId": deal, "WhoId": contact})["id"]
    stored = sf.Task.get(open_task)
    assert (stored["Status"], stored["Priority"], stored["IsClosed"]) == (
        "Not Started",
        "Normal",
        False,
    )
    assert stored["AccountId"] == account
    assert sf.Opportunity.get(deal)["LastActivityDate"] is None  # open tasks do not count

    sf.Task.update(open_task, {"Status": "Completed", "ActivityDate": "2029-12-01"})
    closed = sf.Task.get(open_task)
    assert (closed["IsClosed"], closed["CompletedDateTime"] is not None) == (True, True)
    opportunity = sf.Opportunity.get(deal)
    assert opportunity["LastActivityDate"] == "2029-12-01"
    # A system change: SystemModstamp moves, LastModifiedDate does not.
    assert opportunity["SystemModstamp"] > stamp
    assert opportunity["LastModifiedDate"] < opportunity["SystemModstamp"]
    assert sf.Contact.get(contact)["LastActivityDate"] == "2029-12-01"
    assert sf.Account.get(account)["LastActivityDate"] == "2029-12-01"
    # An earlier completed task leaves the later date alone.
    sf.Task.create(
        {"Subject": "Old", "WhatId": deal, "Status": "Completed", "ActivityDate": "2020-01-01"}
    )
    assert sf.Opportunity.get(deal)["LastActivityDate"] == "2029-12-01"

    # Deleting the opportunity takes its tasks and notes with it.
    sf.Note.create({"ParentId": deal, "Title": "T", "Body": "B"})
    sf.Opportunity.delete(deal)
    assert sandbox.sf_stats(sobject="Task")["live"] == 0
    assert sandbox.sf_stats(sobject="Note")["deleted"] == 1


def test_salesforce_refuses_notes_as_salesforce_does(sandbox: Sandbox) -> None:
    sf = sandbox.sf_client()
    account = sf.Account.create({"Name": "Acme"})["id"]
    with pytest.raises(SalesforceMalformedRequest) as orphan:
        sf.Note.create({"Title": "No parent"})
    assert error_code(orphan.value) == "REQUIRED_FIELD_MISSING"
    with pytest.raises(SalesforceMalformedRequest) as custom:
        sf.Note.create({"ParentId": account, "Title": "T", "Switchboard_Write_Id__c": "w"})
    assert error_code(custom.value) == "INVALID_FIELD"
    with pytest.raises(SalesforceMalformedRequest) as long:
        sf.Note.create({"ParentId": account, "Title": "x" * 81})
    assert error_code(long.value) == "STRING_TOO_LONG"
    assert sandbox.sf_stats(sobject="Note")["live"] == 0


# --- the mappings --------------------------------------------------------------------------------


def test_hubspot_task_mapping() -> None:
    now = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)
    data = activity_input("task", TaskIn(subject="S", deal_id="7", priority="medium"))
    props = activity_properties(data, now=now)
    assert props == {
        "hs_task_subject": "S",
        "hs_task_status": "NOT_STARTED",
        "hs_timestamp": "2024-05-01T09:30:00.000Z",  # no due date: due when created
        "hs_task_priority": "MEDIUM",
    }
    dated = activity_properties(
        TaskIn(subject="S", deal_id="7", due_date=date(2030, 1, 2)), now=now
    )
    assert dated["hs_timestamp"] == "2030-01-02T12:00:00.000Z"
    read = hubspot_activity(
        "task",
        HubSpotObject.model_validate(
            {
                "id": "9",
                "properties": {"hs_task_status": "WAITING", "hs_task_priority": "NONE"},
                "associations": {"deals": {"results": [{"id": "7", "type": "task_to_deal"}]}},
            }
        ),
    )
    assert isinstance(read, Task)
    assert (read.status, read.priority, read.deal_id) == ("waiting", None, "7")
    with pytest.raises(ValidationFailed):
        activity_input("note", TaskIn(subject="S", deal_id="7"))


def test_salesforce_activity_mapping() -> None:
    assert title_of("\n  First line  \nsecond") == "First line"
    assert title_of("x" * 100) == "x" * 80
    deal, company, contact = "006Dn000000AAAAAAA", "001Dn000000AAAAAAA", "003Dn000000AAAAAAA"
    note = NoteIn(body="Hi", company_id=company, deal_id=deal, contact_id=contact)
    assert activity_fields(note)["ParentId"] == deal
    task = TaskIn(subject="S", company_id=company, contact_id=contact, priority="medium")
    fields = activity_fields(task)
    assert (fields["WhatId"], fields["WhoId"], fields["Priority"]) == (company, contact, "Normal")
    with pytest.raises(ValidationFailed):
        activity_fields(TaskIn(subject="S", deal_id="123"))  # not a Salesforce id
    read = salesforce_activity(
        "task",
        {
            "Id": "00T1",
            "WhoId": contact,
            "WhatId": deal,
            "AccountId": company,
            "Status": "In Progress",
        },
    )
    assert isinstance(read, Task)
    assert (read.contact_id, read.deal_id, read.company_id, read.status) == (
        contact,
        deal,
        company,
        "in_progress",
    )
