"""crm_hygiene against the HubSpot sandbox, deterministic path: the duplicate groups and
fixes it finds in the mirror, the approval's diff, the writes an approval sends (read back
from the sandbox) and a rejection that sends none; config and input checks; scale checks of
the candidate finding (5,000 mirrored contacts; 10,000 contacts in one company)."""

from __future__ import annotations

import random
import string
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone

from accounts.audit import Actor
from core.errors import ErrorCode, ValidationFailed
from integrations.models import Connection, CrmRecord, CrmWrite
from integrations.providers.unified import CompanyIn, ContactIn, DealIn
from integrations.services.calls import crm_client_for
from workflows.graphs.crm_hygiene.candidates import (
    MirrorRecord,
    company_matches,
    contact_matches,
)
from workflows.graphs.crm_hygiene.keys import clean_domain, email_key
from workflows.graphs.crm_hygiene.nodes import find_candidates
from workflows.graphs.crm_hygiene.state import HygieneConfig
from workflows.models import Approval, RunStatus, Workflow, WorkflowRun
from workflows.services import approval_decide, run_start, workflow_update

from .conftest import create, drive

pytestmark = pytest.mark.django_db(transaction=True)
ACTOR = Actor(label="tester")


@dataclass(frozen=True)
class Mess:
    """A CRM with duplicates and badly stored values (ids of the sandbox records)."""

    pat: str  # pat.lee@gmail.com, the older
    pat_again: str  # patlee+crm@gmail.com, with phone and title
    jon: str  # no email
    john: str  # "John Smith", john.smith@, at the same company as "Jon Smith"
    ann: str
    dan: str  # Ann Lee / Dan Lee at one company: alike, but two people
    mixed: str  # an email stored with capitals and spaces
    initech: str
    initech_inc: str  # same domain, written https://www.../
    on_initech_inc: str  # a contact of the duplicate company
    deal_on_initech_inc: str
    globex: str  # domain with scheme, www and path
    umbrella: str  # no domain
    umbrella_corp: str  # "Umbrella Corporation", umbrella.example.com


def make_mess(connection: Connection) -> Mess:
    def company(**fields: Any) -> str:
        return str(create(connection, "company", CompanyIn(**fields)).id)

    def contact(email: str | None, first: str, last: str, **more: Any) -> str:
        data = ContactIn(email=email, first_name=first, last_name=last, **more)
        return str(create(connection, "contact", data).id)

    initech = company(name="Initech", domain="initech.example.com")
    initech_inc = company(
        name="Initech, Inc.",
        domain="https://www.initech.example.com/",
        industry="COMPUTER_SOFTWARE",
        employees=250,
    )
    umbrella = company(name="Umbrella Corp")
    umbrella_corp = company(
        name="Umbrella Corporation", domain="umbrella.example.com", employees=40
    )
    globex = company(name="Globex", domain="HTTP://WWW.Globex.example.com/about")
    mess = Mess(
        pat=contact("pat.lee@gmail.com", "Pat", "Lee"),
        pat_again=contact(
            "patlee+crm@gmail.com", "Pat", "Lee", phone="+1 555 0100", job_title="CTO"
        ),
        jon=contact(None, "Jon", "Smith", company_id=initech),
        john=contact(
            "john.smith@initech.example.com", "John", "Smith", company_id=initech, phone="555"
        ),
        ann=contact("ann@initech.example.com", "Ann", "Lee", company_id=initech),
        dan=contact("dan@initech.example.com", "Dan", "Lee", company_id=initech),
        mixed=contact("mixed@example.org", "Mix", "Case"),
        initech=initech,
        initech_inc=initech_inc,
        on_initech_inc=contact("kim@initech.example.com", "Kim", "Park", company_id=initech_inc),
        deal_on_initech_inc=create(
            connection, "deal", DealIn(name="Initech expansion", company_id=initech_inc)
        ).id,
        globex=globex,
        umbrella=umbrella,
        umbrella_corp=umbrella_corp,
    )
    # A CRM that keeps what was typed (Salesforce does; HubSpot lower-cases emails itself):
    # the mirror holds the email as it was entered.
    row = CrmRecord.objects.get(connection=connection, external_id=mess.mixed)
    row.fields = {**row.fields, "email": "  Mixed@Example.ORG "}
    row.save(update_fields=["fields"])
    return mess


def start(workflow: Workflow, **input: Any) -> WorkflowRun:
    return run_start(workflow=workflow, actor=ACTOR, trigger="api", input=input)


def pending_approval(run: WorkflowRun) -> Approval:
    run = drive(run)
    assert run.status == RunStatus.WAITING_APPROVAL, (run.error_code, run.error_message)
    return Approval.objects.get(run=run)


def writes_by(approval: Approval) -> dict[tuple[str, str, str], dict[str, Any]]:
    """The proposal as (operation, type, record id) -> payload."""
    return {
        (p["operation"], p["object_type"], p["record_id"]): p["payload"] for p in approval.proposal
    }


def out(run: WorkflowRun) -> dict[str, Any]:
    assert run.output is not None, (run.status, run.error_code, run.error_message)
    output: dict[str, Any] = run.output
    return output


def provider_calls(sandbox: Any) -> dict[str, int]:
    calls: dict[str, int] = sandbox.counters()["requests"]
    return {k: v for k, v in calls.items() if k.split(" ", 1)[0] in ("PATCH", "DELETE", "PUT")}


def get(connection: Connection, object_type: str, record_id: str) -> Any:
    return async_to_sync(crm_client_for(connection).get)(object_type, record_id)  # type: ignore[arg-type]


# --- the pieces ----------------------------------------------------------------------------


def test_keys_fold_what_makes_one_mailbox_or_domain() -> None:
    assert email_key(" Pat.Lee+crm@GoogleMail.com ") == "patlee@gmail.com"
    assert email_key("pat.lee+x@initech.com") == "pat.lee@initech.com"  # dots count off Gmail
    assert email_key("not an address") is None
    assert clean_domain("HTTPS://www.Acme.com:443/about?x=1#top") == "acme.com"
    assert clean_domain("acme.com.") == "acme.com"
    assert clean_domain("   ") is None


def test_company_names_join_only_where_domains_allow() -> None:
    records = [
        MirrorRecord("1", {"name": "Acme, Inc.", "domain": "acme.com"}),
        MirrorRecord("2", {"name": "ACME Incorporated", "domain": None}),
        MirrorRecord("3", {"name": "Acme Ltd", "domain": "acme.co.uk"}),  # a subsidiary
        MirrorRecord("4", {"name": "Acme Store 12", "domain": None}),
        MirrorRecord("5", {"name": "Acme Store 13", "domain": None}),  # numbers differ
    ]
    groups = company_matches(records, 0.88)
    # 2 matches both 1 and 3 by name, but 1 and 3 have different domains: 2 joins the
    # first, and the group then refuses 3.
    assert [set(g.ids) for g in groups] == [{"1", "2"}]


# --- the graph -----------------------------------------------------------------------------


def test_finds_groups_and_fixes_and_an_approval_writes_them_once(
    hubspot: Connection, workflows: dict[str, Workflow], sandbox: Any
) -> None:
    mess = make_mess(hubspot)
    approval = pending_approval(start(workflows["crm_hygiene"]))
    writes = writes_by(approval)

    # Contacts: one mailbox (Gmail dots and a plus tag), one person with a typo; Ann and Dan
    # stay apart. The oldest record of each group is kept and takes what the other knew.
    assert ("archive", "contact", mess.pat_again) in writes
    assert writes[("update", "contact", mess.pat)] == {"phone": "+1 555 0100", "job_title": "CTO"}
    assert ("archive", "contact", mess.john) in writes
    # Jon is kept and takes John's address: HubSpot holds one address once, so it can only
    # move after John is archived (the archives of a group come first).
    assert writes[("update", "contact", mess.jon)] == {
        "email": "john.smith@initech.example.com",
        "phone": "555",
    }
    assert not {k for k in writes if k[2] in (mess.ann, mess.dan)}
    # Companies: one domain however written, one name where only one has a domain.
    assert ("archive", "company", mess.initech_inc) in writes
    assert writes[("update", "company", mess.initech)] == {
        "industry": "COMPUTER_SOFTWARE",
        "employees": 250,
    }
    assert ("archive", "company", mess.umbrella_corp) in writes
    assert writes[("update", "company", mess.umbrella)] == {
        "domain": "umbrella.example.com",
        "employees": 40,
    }
    # What was on the duplicate company moves to the one kept.
    assert writes[("update", "contact", mess.on_initech_inc)] == {"company_id": mess.initech}
    assert writes[("update", "deal", mess.deal_on_initech_inc)] == {"company_id": mess.initech}
    # Fixes.
    assert writes[("update", "contact", mess.mixed)] == {"email": "mixed@example.org"}
    assert writes[("update", "company", mess.globex)] == {"domain": "globex.example.com"}
    assert len(writes) == len(approval.proposal) == 12
    # Archives of a group come before the update of the record kept (HubSpot emails are
    # unique: the kept contact can only take a duplicate's address once it is archived).
    order = [(p["operation"], p["record_id"]) for p in approval.proposal]
    assert order.index(("archive", mess.john)) < order.index(("update", mess.jon))

    diffs = {(d["operation"], d["record_id"]): d["changes"] for d in approval.diff}
    assert {"field": "phone", "before": None, "after": "+1 555 0100"} in diffs[("update", mess.pat)]
    assert {"field": "email", "before": "  Mixed@Example.ORG ", "after": "mixed@example.org"} in (
        diffs[("update", mess.mixed)]
    )
    archived_fields = {c["field"]: c["before"] for c in diffs[("archive", mess.pat_again)]}
    assert archived_fields["email"] == "patlee+crm@gmail.com"
    assert "2 duplicate group" not in approval.summary
    assert "merge 4" in approval.summary
    assert not CrmWrite.objects.exists()
    assert provider_calls(sandbox) == {}

    approval_decide(approval=approval, approved=True, actor=ACTOR)
    run = drive(approval.run)
    assert run.status == RunStatus.SUCCEEDED, (run.error_code, run.error_message)
    assert out(run)["outcome"] == "written"
    assert out(run)["merged"] == 4
    assert out(run)["archived"] == 4
    assert out(run)["moved"] == 2
    assert out(run)["fixes"] == 2
    assert out(run)["groups_found"] == 4
    assert out(run)["reviewed_by"] == "rules"

    # Every proposed write went out exactly once.
    assert CrmWrite.objects.count() == 12
    assert set(CrmWrite.objects.values_list("status", flat=True)) == {"succeeded"}
    calls = provider_calls(sandbox)
    assert sum(v for k, v in calls.items() if k.startswith("DELETE")) == 4
    assert sum(v for k, v in calls.items() if k.startswith("PATCH")) == 8
    assert sandbox.hubspot_stats(object_type="contacts")["archived"] == 2
    assert sandbox.hubspot_stats(object_type="companies")["archived"] == 2

    # Read back from the sandbox.
    for kind, gone in (
        ("contact", mess.pat_again),
        ("contact", mess.john),
        ("company", mess.initech_inc),
        ("company", mess.umbrella_corp),
    ):
        assert get(hubspot, kind, gone).error.code == ErrorCode.NOT_FOUND
    jon = get(hubspot, "contact", mess.jon).unwrap()
    assert (jon.email, jon.phone) == ("john.smith@initech.example.com", "555")
    pat = get(hubspot, "contact", mess.pat).unwrap()
    assert (pat.phone, pat.job_title, pat.email) == ("+1 555 0100", "CTO", "pat.lee@gmail.com")
    initech = get(hubspot, "company", mess.initech).unwrap()
    assert (initech.industry, initech.employees) == ("COMPUTER_SOFTWARE", 250)
    assert get(hubspot, "company", mess.umbrella).unwrap().domain == "umbrella.example.com"
    assert get(hubspot, "company", mess.globex).unwrap().domain == "globex.example.com"
    assert get(hubspot, "contact", mess.on_initech_inc).unwrap().company_id == mess.initech
    assert get(hubspot, "deal", mess.deal_on_initech_inc).unwrap().company_id == mess.initech
    # The mirror followed the writes: a new run finds nothing more to do.
    again = drive(start(workflows["crm_hygiene"]))
    assert again.status == RunStatus.SUCCEEDED
    assert out(again)["outcome"] == "nothing_to_do"
    assert out(again)["groups_found"] == 0


def test_a_rejection_writes_nothing(
    hubspot: Connection, workflows: dict[str, Workflow], sandbox: Any
) -> None:
    make_mess(hubspot)
    approval = pending_approval(start(workflows["crm_hygiene"], object_types=["company"]))
    assert {p["object_type"] for p in approval.proposal} == {"company", "contact", "deal"}
    assert {p["operation"] for p in approval.proposal if p["object_type"] == "company"} == {
        "archive",
        "update",
    }
    approval_decide(approval=approval, approved=False, actor=ACTOR, comment="not now")
    run = drive(approval.run)
    assert run.status == RunStatus.SUCCEEDED
    assert out(run)["outcome"] == "rejected"
    assert out(run)["comment"] == "not now"
    assert out(run)["scanned"] == {"company": 5}
    assert not CrmWrite.objects.exists()
    assert provider_calls(sandbox) == {}
    assert sandbox.hubspot_stats(object_type="companies")["archived"] == 0


def test_config_caps_groups_and_can_skip_approval(
    hubspot: Connection, workflows: dict[str, Workflow], sandbox: Any
) -> None:
    mess = make_mess(hubspot)
    workflow = workflow_update(
        workflow=workflows["crm_hygiene"],
        actor=ACTOR,
        changes={
            "config": {
                "max_groups": 1,
                "max_fixes": 0,
                "primary": "most_complete",
                "require_approval": False,
            }
        },
    )
    run = drive(start(workflow, object_types=["contact"]))
    assert run.status == RunStatus.SUCCEEDED, (run.error_code, run.error_message)
    assert not Approval.objects.filter(run=run).exists()
    assert out(run)["groups_found"] == 2
    assert out(run)["groups_truncated"] == 1
    assert out(run)["fixes"] == 0
    # The surest group (one mailbox) comes first; the most complete record of it is kept
    # (and lacks nothing the other had: no update).
    written = list(CrmWrite.objects.order_by("created_at").values_list("operation", "record_id"))
    assert written == [("archive", mess.pat)]
    assert get(hubspot, "contact", mess.pat).error.code == ErrorCode.NOT_FOUND
    kept = get(hubspot, "contact", mess.pat_again).unwrap()
    assert kept.email == "patlee+crm@gmail.com"
    assert kept.phone == "+1 555 0100"


def test_bad_config_and_input_are_coded(workflows: dict[str, Workflow]) -> None:
    workflow = workflows["crm_hygiene"]
    with pytest.raises(ValidationFailed) as bad:
        workflow_update(
            workflow=workflow,
            actor=ACTOR,
            changes={"config": {"name_threshold": 1.5, "max_groups": 0, "primary": "newest"}},
        )
    assert bad.value.code == ErrorCode.VALIDATION_FAILED
    assert set(bad.value.details["fields"]) == {
        "config.name_threshold",
        "config.max_groups",
        "config.primary",
    }
    with pytest.raises(ValidationFailed) as bad_input:
        start(workflow, object_types=["deal"])
    assert set(bad_input.value.details["fields"]) == {"input.object_types.0"}
    with pytest.raises(ValidationFailed):
        start(workflow, object_types=[])
    assert not WorkflowRun.objects.exists()


# --- scale ---------------------------------------------------------------------------------

FIRST = ("Ann", "Bob", "Carla", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivan", "Jo", "Kim", "Lou")
LAST = ("Smith", "Jones", "Brown", "Garcia", "Miller", "Davis", "Lopez", "Wilson", "Moore")


def test_candidate_finding_scales_to_thousands(
    hubspot: Connection, workflows: dict[str, Workflow]
) -> None:
    """5,000 mirrored contacts (with 50 planted duplicates, half one mailbox written
    differently, half a typo in the name at the same company) -> the planted groups, found
    in a few seconds, and the run reaches its approval."""
    rnd = random.Random(7)  # noqa: S311 - test data, not secrets
    now = timezone.now()
    rows: list[CrmRecord] = []
    people: list[dict[str, Any]] = []
    for i in range(5000):
        # ~17 people per company, no two with one name (a planted typo has one original).
        company, nth = f"c{i % 300}", i // 300
        first, last = FIRST[nth % len(FIRST)], LAST[(nth // len(FIRST) + i) % len(LAST)]
        fields = {
            "email": f"{first}.{last}{i}@co{i % 300}.example.com".lower(),
            "first_name": first,
            "last_name": last,
            "company_id": company,
        }
        people.append(fields)
        rows.append(_row(hubspot, f"p{i}", fields, now - timedelta(days=rnd.randint(30, 900))))
    planted: set[frozenset[str]] = set()
    for k in range(50):
        original = people[k * 97]
        if k % 2:
            copy = {**original, "email": original["email"].upper().replace("@", "+old@")}
        else:
            copy = {**original, "email": None, "first_name": original["first_name"] + "n"}
        rows.append(_row(hubspot, f"dup{k}", copy, now))
        planted.add(frozenset({f"p{k * 97}", f"dup{k}"}))
    CrmRecord.objects.bulk_create(rows, batch_size=1000)

    began = time.perf_counter()
    found = find_candidates(hubspot.pk, ["contact"], HygieneConfig(max_groups=200, max_fixes=0))
    took = time.perf_counter() - began
    print(f"\ncandidate finding: 5,050 contacts in {took:.2f} s")
    groups = {frozenset(m["id"] for m in g["members"]) for g in found["groups"]}
    assert groups == planted
    assert found["scan"]["scanned"] == {"contact": 5050}

    began = time.perf_counter()
    approval = pending_approval(start(workflows["crm_hygiene"], object_types=["contact"]))
    print(f"run to its approval: {time.perf_counter() - began:.2f} s")
    assert len([p for p in approval.proposal if p["operation"] == "archive"]) == 25
    assert approval.run.steps.get(node="scan").output_summary  # recorded (cut to size)


def test_one_huge_company_is_compared_by_neighbours_not_pairs() -> None:
    """10,000 contacts of one company (one block: all pairs would be 50 million
    comparisons) with 20 planted typos -> found by comparing name-order neighbours."""
    rnd = random.Random(11)  # noqa: S311 - test data, not secrets

    def word() -> str:
        return "".join(rnd.choice(string.ascii_lowercase) for _ in range(rnd.randint(4, 8)))

    records = [
        MirrorRecord(str(i), {"first_name": word(), "last_name": word(), "company_id": "1"})
        for i in range(10_000)
    ]
    planted: set[frozenset[str]] = set()
    for k in range(20):
        original = records[k * 400].fields
        last = str(original["last_name"])
        typo = last[:2] + ("x" if last[2] != "x" else "y") + last[3:]
        records.append(MirrorRecord(f"typo{k}", {**original, "last_name": typo}))
        planted.add(frozenset({str(k * 400), f"typo{k}"}))
    began = time.perf_counter()
    groups = {frozenset(m.ids) for m in contact_matches(records, 0.88)}
    print(f"\none block of 10,020 contacts in {time.perf_counter() - began:.2f} s")
    assert planted <= groups


def _row(
    connection: Connection, external_id: str, fields: dict[str, Any], created: Any
) -> CrmRecord:
    return CrmRecord(
        connection=connection,
        object_type="contact",
        external_id=external_id,
        fields=fields,
        remote_created_at=created,
        remote_updated_at=created,
    )
