"""HubSpotCrmClient and HubSpotProvider against the HubSpot sandbox, over real HTTP.

Tokens come from ``SandboxTokens``, a real ``TokenSource`` that refreshes at the sandbox's token
endpoint; every HTTP attempt lands in a ``CallLog``. Assertions look at what a caller sees (the
``Result``) and at what the sandbox received (its counters).
"""

from __future__ import annotations

import time
import uuid
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from core.errors import ErrorCode
from integrations.providers.base import TokenSet
from integrations.providers.hubspot.client import HubSpotCrmClient
from integrations.providers.hubspot.provider import HubSpotProvider
from integrations.providers.registry import get_provider
from integrations.providers.unified import (
    Association,
    CompanyIn,
    Contact,
    ContactIn,
    Deal,
    DealIn,
    ObjectType,
    RecordIn,
    SearchFilter,
    SearchQuery,
    SearchSort,
)
from tests.integrations.clients import CallLog, SandboxTokens, email, fails, ok
from tests.sandbox_fixtures import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET

pytestmark = pytest.mark.asyncio

CUSTOM = {"contact": ["favorite_color", "loyalty_points"]}


def hubspot_tokens(provider: HubSpotProvider, minted: dict[str, Any]) -> SandboxTokens:
    return SandboxTokens(
        provider,
        minted,
        token_url=provider.token_url(),
        client_id=SANDBOX_CLIENT_ID,
        client_secret=SANDBOX_CLIENT_SECRET,
    )


class Harness:
    def __init__(self, sandbox: Any, provider: HubSpotProvider, minted: dict[str, Any]) -> None:
        self.sandbox = sandbox
        self.provider = provider
        self.minted = minted
        self.tokens = hubspot_tokens(provider, minted)
        self.log = CallLog()
        self.client = self.build()

    def build(self, **kwargs: Any) -> HubSpotCrmClient:
        options: dict[str, Any] = {
            "tokens": self.tokens,
            "record_call": self.log,
            "api_url": self.provider.config.api_url,
            "rate_limit": self.provider.rate_limit,
            "extra_properties": CUSTOM,
        }
        return HubSpotCrmClient(**(options | kwargs))

    def requests(self, key: str) -> int:
        return int(self.sandbox.counters()["requests"].get(key, 0))


@pytest.fixture
def hub(sandbox: Any, sandbox_settings: Any) -> Harness:
    provider = get_provider("hubspot")
    assert isinstance(provider, HubSpotProvider)
    return Harness(sandbox, provider, sandbox.mint_token())


# --- records ---------------------------------------------------------------------------------

INPUTS: dict[str, tuple[RecordIn, RecordIn, dict[str, Any]]] = {
    "contact": (
        ContactIn(
            first_name="Ada", last_name="Lovelace", job_title="Analyst", lifecycle_stage="lead"
        ),
        ContactIn(job_title="Chief Analyst", lifecycle_stage="customer"),
        {"first_name": "Ada", "job_title": "Chief Analyst", "lifecycle_stage": "customer"},
    ),
    "company": (
        CompanyIn(name="Acme", domain="acme.test", industry="CONSTRUCTION", employees=250),
        CompanyIn(employees=300, industry="MANUFACTURING"),
        {"name": "Acme", "employees": 300, "industry": "MANUFACTURING"},
    ),
    "deal": (
        DealIn(
            name="Renewal",
            amount=Decimal("1500.50"),
            currency="EUR",
            stage="qualifiedtobuy",
            close_date=date(2024, 6, 30),
        ),
        DealIn(stage="closedwon", amount=Decimal("2000")),
        {
            "name": "Renewal",
            "stage": "closedwon",
            "amount": Decimal("2000"),
            "currency": "EUR",
            "close_date": date(2024, 6, 30),
        },
    ),
}


@pytest.mark.parametrize("object_type", ["contact", "company", "deal"])
async def test_create_get_update_archive(hub: Harness, object_type: ObjectType):
    data, change, expected = INPUTS[object_type]
    if isinstance(data, ContactIn):
        data = data.model_copy(update={"email": email()})
    client = hub.client

    created = ok(await client.create(object_type, data))
    assert created.id.isdigit()
    assert created.created_at is not None
    fetched = ok(await client.get(object_type, created.id))
    assert fetched.model_dump(exclude={"properties", "updated_at"}) == created.model_dump(
        exclude={"properties", "updated_at"}
    )
    for field in data.model_fields_set - {"properties"}:
        assert getattr(fetched, field) == getattr(data, field), field
    updated = ok(await client.update(object_type, created.id, change))
    reread = ok(await client.get(object_type, created.id))
    for field, value in expected.items():
        assert getattr(updated, field) == value, field
        assert getattr(reread, field) == value, field
    assert reread.updated_at >= created.updated_at

    ok(await client.archive(object_type, created.id))
    gone = await client.get(object_type, created.id)
    assert gone.error_code == ErrorCode.NOT_FOUND
    assert created.id in fails(gone).message
    archived = ok(await client.list(object_type, archived=True))
    assert [r.id for r in archived.results] == [created.id]
    assert archived.results[0].archived is True
    plural = {"contact": "contacts", "company": "companies", "deal": "deals"}[object_type]
    assert hub.log.summary()[:3] == [
        ("POST", f"/crm/v3/objects/{plural}", 201, 1, None),
        ("GET", f"/crm/v3/objects/{plural}/{created.id}", 200, 1, None),
        ("PATCH", f"/crm/v3/objects/{plural}/{created.id}", 200, 1, None),
    ]
    assert hub.log.summary()[-2:] == [
        ("GET", f"/crm/v3/objects/{plural}/{created.id}", 404, 1, "not_found"),
        ("GET", f"/crm/v3/objects/{plural}", 200, 1, None),
    ]


@pytest.mark.parametrize("object_type", ["contact", "company", "deal"])
async def test_list_pages_through_every_record_once(hub: Harness, object_type: ObjectType):
    inputs: list[RecordIn] = [
        ContactIn(email=email())
        if object_type == "contact"
        else CompanyIn(name=f"Co {i}")
        if object_type == "company"
        else DealIn(name=f"Deal {i}")
        for i in range(5)
    ]
    made = ok(await hub.client.batch_create(object_type, inputs))
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = ok(await hub.client.list(object_type, limit=2, cursor=cursor))
        pages += 1
        assert len(page.results) <= 2
        seen += [r.id for r in page.results]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == 3
    assert sorted(seen) == sorted(r.id for r in made.results)
    everything = ok(await hub.client.list(object_type, limit=500))  # HubSpot's cap is 100
    assert len(everything.results) == 5
    plural = {"contact": "contacts", "company": "companies", "deal": "deals"}[object_type]
    assert [c.path for c in hub.log.calls[1:]] == [f"/crm/v3/objects/{plural}"] * 4


async def test_custom_properties_pass_through_both_ways(hub: Harness):
    data = ContactIn(
        email=email(), first_name="Ada", properties={"favorite_color": "teal", "loyalty_points": 3}
    )
    created = ok(await hub.client.create("contact", data))
    assert created.properties["favorite_color"] == "teal"
    fetched = ok(await hub.client.get("contact", created.id))
    assert fetched.properties["favorite_color"] == "teal"
    assert fetched.properties["loyalty_points"] == "3"  # HubSpot answers strings
    assert fetched.first_name == "Ada"

    ok(
        await hub.client.update(
            "contact", created.id, RecordIn(properties={"favorite_color": "navy"})
        )
    )
    reread = ok(await hub.client.get("contact", created.id))
    assert reread.properties["favorite_color"] == "navy"
    assert reread.first_name == "Ada"  # unset unified fields are left alone

    # A set unified field wins over the same raw property; explicit None clears.
    both = ContactIn(first_name="Typed", phone=None, properties={"firstname": "Raw"})
    merged = ok(await hub.client.update("contact", created.id, both))
    assert (merged.first_name, merged.phone) == ("Typed", None)

    # Without the extra properties configured, HubSpot does not send them back.
    plain = hub.build(extra_properties=None)
    assert "favorite_color" not in ok(await plain.get("contact", created.id)).properties


async def test_provider_reads_extra_properties_from_settings(sandbox: Any, sandbox_settings: Any):
    sandbox_settings.PROVIDERS["hubspot"] = sandbox_settings.PROVIDERS["hubspot"] | {
        "company_properties": "account_tier, credit_limit"
    }
    provider = get_provider("hubspot")
    assert isinstance(provider, HubSpotProvider)
    client = provider.crm_client(
        tokens=hubspot_tokens(provider, sandbox.mint_token()), record_call=CallLog()
    )
    created = ok(
        await client.create(
            "company", CompanyIn(name="Tiered", properties={"account_tier": "gold"})
        )
    )
    assert ok(await client.get("company", created.id)).properties["account_tier"] == "gold"


# --- batches ---------------------------------------------------------------------------------


async def test_batch_create_250_contacts_in_three_calls(hub: Harness):
    emails = [email() for _ in range(250)]
    before = hub.requests("POST /crm/v3/objects/contacts/batch/create")

    result = ok(
        await hub.client.batch_create(
            "contact", [ContactIn(email=e, first_name=f"N{i}") for i, e in enumerate(emails)]
        )
    )

    assert hub.requests("POST /crm/v3/objects/contacts/batch/create") - before == 3
    assert result.errors == []
    assert [r.email for r in result.results] == emails  # in input order
    assert len({r.id for r in result.results}) == 250
    assert (
        hub.log.summary() == [("POST", "/crm/v3/objects/contacts/batch/create", 201, 1, None)] * 3
    )
    listed = ok(await hub.client.search("contact", SearchQuery(limit=1)))
    assert listed.total == 250


async def test_batch_create_reports_invalid_items_by_index(hub: Harness):
    good = [email() for _ in range(3)]
    items: list[RecordIn] = [
        ContactIn(email=good[0]),
        ContactIn(email="not-an-email"),
        ContactIn(email=good[1], properties={"loyalty_points": "lots"}),
        CompanyIn(name="wrong type"),  # never sent
        ContactIn(email=good[2], lifecycle_stage="lead"),
    ]
    result = ok(await hub.client.batch_create("contact", items))

    assert [r.email for r in result.results] == [good[0], good[2]]
    assert [(e.index, e.code) for e in result.errors] == [
        (1, "validation_failed"),
        (2, "validation_failed"),
        (3, "validation_failed"),
    ]
    assert result.errors[0].details["fields"] == {"email": "Email address not-an-email is invalid"}
    assert list(result.errors[1].details["fields"]) == ["loyalty_points"]
    assert "ContactIn" in result.errors[2].message
    assert hub.requests("POST /crm/v3/objects/contacts/batch/create") == 1
    assert hub.log.summary() == [("POST", "/crm/v3/objects/contacts/batch/create", 207, 1, None)]


async def test_batch_update_with_a_missing_record(hub: Harness):
    made = ok(await hub.client.batch_create("company", [CompanyIn(name=f"C{i}") for i in range(3)]))
    ids = [r.id for r in made.results]
    items: list[tuple[str, RecordIn]] = [
        (ids[0], CompanyIn(employees=10)),
        ("999999", CompanyIn(employees=11)),
        (ids[2], CompanyIn(employees=12)),
    ]

    result = ok(await hub.client.batch_update("company", items))

    assert [(r.id, r.employees) for r in result.results] == [(ids[0], 10), (ids[2], 12)]
    assert [(e.index, e.code) for e in result.errors] == [(1, "not_found")]
    assert ok(await hub.client.get("company", ids[2])).employees == 12


async def test_batch_stops_at_a_systemic_failure_and_keeps_what_was_written(hub: Harness):
    small = hub.build(rate_limit=hub.provider.rate_limit.model_copy(update={"batch_size": 2}))
    hub.sandbox.limits(per_10s=1)  # the first chunk passes, the second gets HubSpot's 429

    result = ok(await small.batch_create("company", [CompanyIn(name=f"c{i}") for i in range(5)]))

    assert [r.name for r in result.results] == ["c0", "c1"]
    assert [(e.index, e.code) for e in result.errors] == [(i, "rate_limited") for i in (2, 3, 4)]
    assert all(e.details["retry_after"] >= 1 for e in result.errors)
    assert result.errors[0].message.startswith("Not written: ")
    assert hub.requests("POST /crm/v3/objects/companies/batch/create") == 2  # the third never sent


async def test_batch_failing_before_anything_was_written_fails_whole(hub: Harness):
    hub.sandbox.faults(fail_next=1, fail_status=503)
    result = await hub.client.batch_create("company", [CompanyIn(name=f"n{i}") for i in range(4)])
    assert result.error_code == ErrorCode.PROVIDER_UNAVAILABLE
    assert ok(await hub.client.list("company")).results == []


async def test_batch_update_chunk_rejected_whole_fails_its_items_and_goes_on(hub: Harness):
    made = ok(await hub.client.batch_create("company", [CompanyIn(name=f"c{i}") for i in range(3)]))
    ids = [r.id for r in made.results]
    small = hub.build(rate_limit=hub.provider.rate_limit.model_copy(update={"batch_size": 2}))
    items: list[tuple[str, RecordIn]] = [
        (ids[0], CompanyIn(industry="NOT_AN_INDUSTRY")),
        (ids[1], CompanyIn(employees=5)),
        (ids[2], CompanyIn(employees=6)),
    ]
    result = ok(await small.batch_update("company", items))

    assert [(e.index, e.code) for e in result.errors] == [
        (0, "validation_failed"),
        (1, "validation_failed"),
    ]
    assert result.errors[0].details["fields"] == result.errors[1].details["fields"]
    assert "industry" in result.errors[0].details["fields"]
    assert [(r.id, r.employees) for r in result.results] == [(ids[2], 6)]
    assert ok(await hub.client.get("company", ids[1])).employees is None  # HubSpot wrote nothing


# --- search ----------------------------------------------------------------------------------


async def test_search_with_filters_sort_and_paging(hub: Harness):
    people = [
        ("Ann", "lead"),
        ("Bob", "lead"),
        ("Cid", "customer"),
        ("Dee", "lead"),
        ("Eve", "lead"),
    ]
    made = ok(
        await hub.client.batch_create(
            "contact",
            [
                ContactIn(
                    email=f"{n.lower()}-{uuid.uuid4().hex[:6]}@acme.test",
                    first_name=n,
                    lifecycle_stage=s,
                )
                for n, s in people
            ],
        )
    )
    assert not made.errors
    query = SearchQuery(
        filter_groups=[
            [
                SearchFilter(field="lifecycle_stage", operator="eq", value="lead"),
                SearchFilter(field="email", operator="contains", value="*@acme.test"),
            ]
        ],
        sort=[SearchSort(field="first_name", direction="desc")],
        limit=3,
    )
    first = ok(await hub.client.search("contact", query))
    assert [r.first_name for r in first.results] == ["Eve", "Dee", "Bob"]
    assert first.total == 4
    assert first.next_cursor == "3"
    second = ok(
        await hub.client.search("contact", query.model_copy(update={"cursor": first.next_cursor}))
    )
    assert [r.first_name for r in second.results] == ["Ann"]
    assert second.next_cursor is None

    ors = SearchQuery(
        filter_groups=[
            [SearchFilter(field="first_name", operator="eq", value="Cid")],
            [SearchFilter(field="firstname", operator="in", value=["Ann", "Bob"])],
        ],
        sort=[SearchSort(field="first_name")],
    )
    assert [r.first_name for r in ok(await hub.client.search("contact", ors)).results] == [
        "Ann",
        "Bob",
        "Cid",
    ]
    assert hub.log.summary()[-1] == ("POST", "/crm/v3/objects/contacts/search", 200, 1, None)


async def test_search_past_the_cap_fails_without_a_call(hub: Harness):
    result = await hub.client.search("contact", SearchQuery(cursor="10000"))
    assert result.error_code == ErrorCode.VALIDATION_FAILED
    assert "10,000" in fails(result).message
    assert hub.log.calls == []


async def test_search_unknown_property_is_validation_failed(hub: Harness):
    query = SearchQuery(filter_groups=[[SearchFilter(field="no_such_prop", value="x")]])
    result = await hub.client.search("company", query)
    assert result.error_code == ErrorCode.VALIDATION_FAILED
    assert "no_such_prop" in fails(result).message


# --- associations ----------------------------------------------------------------------------


async def test_associate_contact_to_company_and_read_it_back(hub: Harness):
    company = ok(await hub.client.create("company", CompanyIn(name="Acme")))
    contact = ok(await hub.client.create("contact", ContactIn(email=email())))
    assert ok(await hub.client.associations("contact", contact.id, "company")) == []

    ok(
        await hub.client.associate(
            Association(
                from_type="contact", from_id=contact.id, to_type="company", to_id=company.id
            )
        )
    )

    assert ok(await hub.client.associations("contact", contact.id, "company")) == [company.id]
    assert ok(await hub.client.associations("company", company.id, "contact")) == [contact.id]
    fetched = ok(await hub.client.get("contact", contact.id))
    assert isinstance(fetched, Contact)
    assert fetched.company_id == company.id
    assert (
        "PUT",
        f"/crm/v4/objects/contacts/{contact.id}/associations/default/companies/{company.id}",
        200,
        1,
        None,
    ) in hub.log.summary()
    missing = await hub.client.associate(
        Association(from_type="contact", from_id=contact.id, to_type="company", to_id="999999")
    )
    assert missing.error_code == ErrorCode.NOT_FOUND


async def test_company_id_on_inputs_creates_the_association(hub: Harness):
    company = ok(await hub.client.create("company", CompanyIn(name="Acme")))
    other = ok(await hub.client.create("company", CompanyIn(name="Globex")))

    deal = ok(await hub.client.create("deal", DealIn(name="D1", company_id=company.id)))
    assert isinstance(deal, Deal)
    assert deal.company_id == company.id
    fetched = ok(await hub.client.get("deal", deal.id))
    assert isinstance(fetched, Deal)
    assert fetched.company_id == company.id

    ok(await hub.client.update("deal", deal.id, DealIn(company_id=other.id)))
    assert sorted(ok(await hub.client.associations("deal", deal.id, "company"))) == sorted(
        [company.id, other.id]
    )

    batch = ok(
        await hub.client.batch_create("contact", [ContactIn(email=email(), company_id=company.id)])
    )
    assert batch.results[0].company_id == company.id
    assert ok(await hub.client.associations("contact", batch.results[0].id, "company")) == [
        company.id
    ]
    updated = ok(
        await hub.client.batch_update(
            "contact", [(batch.results[0].id, ContactIn(company_id=other.id))]
        )
    )
    assert not updated.errors
    second = ok(await hub.client.create("contact", ContactIn(email=email())))
    lost = ok(
        await hub.client.batch_update(
            "contact",
            [
                (batch.results[0].id, ContactIn(company_id="999999")),
                (second.id, ContactIn(job_title="Boss", company_id=company.id)),
            ],
        )
    )
    assert [(e.index, e.code) for e in lost.errors] == [(0, "not_found")]
    assert [(r.id, r.job_title, r.company_id) for r in lost.results] == [
        (second.id, "Boss", company.id)
    ]
    assert sorted(
        ok(await hub.client.associations("contact", batch.results[0].id, "company"))
    ) == sorted([company.id, other.id])

    found = ok(
        await hub.client.search(
            "deal", SearchQuery(filter_groups=[[SearchFilter(field="company_id", value=other.id)]])
        )
    )
    assert [r.id for r in found.results] == [deal.id]


# --- auth ------------------------------------------------------------------------------------


async def test_expired_token_refreshes_once_then_succeeds(hub: Harness):
    created = ok(await hub.client.create("company", CompanyIn(name="Acme")))
    hub.log.calls.clear()
    old = hub.tokens.current
    assert hub.sandbox.expire_tokens() >= 1

    fetched = ok(await hub.client.get("company", created.id))

    assert fetched.name == "Acme"
    assert hub.tokens.refreshes == 1
    assert hub.tokens.current != old
    assert hub.sandbox.counters()["token_grants"]["refresh_token"] == 1
    path = f"/crm/v3/objects/companies/{created.id}"
    assert hub.log.summary() == [
        ("GET", path, 401, 1, "unauthenticated"),
        ("GET", path, 200, 2, None),
    ]
    ok(await hub.client.get("company", created.id))
    assert hub.tokens.refreshes == 1  # the new token keeps working


async def test_refused_refresh_is_reauth_required(hub: Harness):
    hub.sandbox.expire_tokens()
    hub.sandbox.revoke_tokens(hub.tokens.refresh_token)

    result = await hub.client.list("contact")

    assert result.error_code == ErrorCode.REAUTH_REQUIRED
    assert hub.tokens.refreshes == 1
    assert hub.log.summary() == [("GET", "/crm/v3/objects/contacts", 401, 1, "unauthenticated")]


class StaleTokens(SandboxTokens):
    """Refreshes into a token HubSpot does not know: the retry gets a second 401."""

    async def refresh(self, rejected: str) -> str:
        self.refreshes += 1
        self.current = "C-unknown-token"
        return self.current


async def test_a_second_401_is_reauth_required_after_exactly_one_refresh(hub: Harness):
    tokens = StaleTokens(
        hub.provider,
        hub.minted,
        token_url=hub.provider.token_url(),
        client_id=SANDBOX_CLIENT_ID,
        client_secret=SANDBOX_CLIENT_SECRET,
    )
    hub.sandbox.expire_tokens()
    client = hub.build(tokens=tokens)

    result = await client.get("contact", "123")

    assert result.error_code == ErrorCode.REAUTH_REQUIRED
    assert tokens.refreshes == 1
    assert [(c.status, c.attempt, c.error_code) for c in hub.log.calls] == [
        (401, 1, "unauthenticated"),
        (401, 2, "reauth_required"),
    ]
    assert hub.minted["access_token"] not in fails(result).message + repr(fails(result).details)


# --- failures --------------------------------------------------------------------------------


async def test_429_is_rate_limited_with_retry_after(hub: Harness):
    hub.sandbox.faults(rate_limit_next=1)
    result = await hub.client.list("company")
    assert result.error_code == ErrorCode.RATE_LIMITED
    assert fails(result).retry_after == 1.0
    assert fails(result).retryable
    assert fails(result).details["policy"] == "TEN_SECONDLY_ROLLING"
    assert hub.log.summary() == [("GET", "/crm/v3/objects/companies", 429, 1, "rate_limited")]

    hub.sandbox.limits(per_10s=2)
    ok(await hub.client.list("company"))
    ok(await hub.client.list("company"))
    third = await hub.client.list("company")
    assert third.error_code == ErrorCode.RATE_LIMITED
    wait = fails(third).retry_after
    assert wait is not None
    assert 1 <= wait <= 10


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_is_provider_unavailable(hub: Harness, status: int):
    hub.sandbox.faults(fail_next=1, fail_status=status)
    result = await hub.client.create("company", CompanyIn(name="Acme"))
    assert result.error_code == ErrorCode.PROVIDER_UNAVAILABLE
    assert fails(result).retryable
    assert hub.log.summary() == [
        ("POST", "/crm/v3/objects/companies", status, 1, "provider_unavailable")
    ]
    assert ok(await hub.client.create("company", CompanyIn(name="Acme"))).name == "Acme"


async def test_timeout_is_provider_unavailable(hub: Harness):
    client = hub.build(timeout=0.5)
    hub.sandbox.faults(timeout_next=1, timeout_seconds=10)
    started = time.monotonic()

    result = await client.list("deal")

    assert time.monotonic() - started < 5
    assert result.error_code == ErrorCode.PROVIDER_UNAVAILABLE
    assert fails(result).details["timed_out"] is True
    assert hub.log.summary() == [("GET", "/crm/v3/objects/deals", None, 1, "provider_unavailable")]


async def test_nothing_listening_is_provider_unavailable(hub: Harness):
    from tests.processes import free_port

    client = hub.build(api_url=f"http://127.0.0.1:{free_port()}")
    result = await client.get("contact", "1")
    assert result.error_code == ErrorCode.PROVIDER_UNAVAILABLE
    assert fails(result).details["timed_out"] is False


async def test_400_is_validation_failed_naming_the_property(hub: Harness):
    bad = ContactIn(email=email(), lifecycle_stage="royalty", properties={"no_such_prop": "x"})
    result = await hub.client.create("contact", bad)
    assert result.error_code == ErrorCode.VALIDATION_FAILED
    assert set(fails(result).details["fields"]) == {"lifecyclestage", "no_such_prop"}
    assert "no_such_prop" in fails(result).message
    assert hub.log.summary() == [("POST", "/crm/v3/objects/contacts", 400, 1, "validation_failed")]


async def test_duplicate_email_is_conflict(hub: Harness):
    address = email()
    ok(await hub.client.create("contact", ContactIn(email=address)))
    result = await hub.client.create("contact", ContactIn(email=address))
    assert result.error_code == ErrorCode.CONFLICT
    assert "already exists" in fails(result).message


async def test_missing_scope_is_provider_error_with_the_category(hub: Harness, sandbox: Any):
    minted = sandbox.mint_token(scopes=["oauth", "crm.objects.contacts.read"])
    client = hub.build(tokens=hubspot_tokens(hub.provider, minted))
    result = await client.list("deal")
    assert result.error_code == ErrorCode.PROVIDER_ERROR
    assert fails(result).details["category"] == "MISSING_SCOPES"
    assert fails(result).details["required_scopes"] == ["crm.objects.deals.read"]


# --- raw passthrough -------------------------------------------------------------------------


async def test_raw_request_passthrough(hub: Harness):
    created = ok(
        await hub.client.request(
            "POST", "/crm/v3/objects/companies", json={"properties": {"name": "Raw"}}
        )
    )
    assert created.status == 201
    assert created.body["properties"]["name"] == "Raw"
    assert "x-hubspot-correlation-id" in created.headers

    hub.sandbox.expire_tokens()
    listed = ok(
        await hub.client.request(
            "GET", "/crm/v3/objects/companies", params={"limit": 1, "properties": "name"}
        )
    )
    assert listed.body["results"][0]["properties"]["name"] == "Raw"
    assert hub.tokens.refreshes == 1

    missing = await hub.client.request("GET", "/crm/v3/objects/companies/999999?archived=false")
    assert missing.error_code == ErrorCode.NOT_FOUND
    assert hub.log.summary() == [
        ("POST", "/crm/v3/objects/companies", 201, 1, None),
        ("GET", "/crm/v3/objects/companies", 401, 1, "unauthenticated"),
        ("GET", "/crm/v3/objects/companies", 200, 2, None),
        ("GET", "/crm/v3/objects/companies/999999", 404, 1, "not_found"),  # no query string
    ]

    for path in ("https://evil.test/steal", "//evil.test/steal", "crm/v3/objects/companies"):
        refused = await hub.client.request("GET", path)
        assert refused.error_code == ErrorCode.VALIDATION_FAILED
    assert len(hub.log.calls) == 4  # refused paths never left the process


async def test_recorded_calls_carry_no_host_query_or_token(hub: Harness):
    ok(await hub.client.list("contact", limit=5, cursor="0"))
    (call,) = hub.log.calls
    assert call.path == "/crm/v3/objects/contacts"
    assert call.duration_ms > 0
    assert hub.tokens.current not in repr(call)


# --- the provider ----------------------------------------------------------------------------


async def test_fetch_identity_reads_the_hub(hub: Harness):
    tokens = TokenSet(access_token=hub.minted["access_token"])
    identity = ok(await hub.provider.fetch_identity(tokens))
    assert identity.external_id == "62515"
    assert identity.display_name == "acme-sandbox.hubspot.test"
    assert identity.user == "owner@acme.test"
    assert "crm.objects.deals.write" in identity.scopes
    assert identity.extra == {"user_id": 4100001, "app_id": 3100001}

    hub.sandbox.expire_tokens()
    expired = await hub.provider.fetch_identity(tokens)
    assert expired.error_code == ErrorCode.REAUTH_REQUIRED


async def test_revoke_and_revoking_twice(hub: Harness):
    tokens = TokenSet(
        access_token=hub.minted["access_token"], refresh_token=hub.minted["refresh_token"]
    )
    ok(await hub.provider.revoke(tokens))
    ok(await hub.provider.revoke(tokens))  # already revoked (404) is done
    hub.sandbox.expire_tokens()
    refused = await hub.client.get("contact", "1")
    assert refused.error_code == ErrorCode.REAUTH_REQUIRED


async def test_provider_descriptor(hub: Harness):
    provider = hub.provider
    assert provider.authorize_url() == f"{hub.sandbox.hubspot_app_url}/oauth/authorize"
    assert provider.token_url() == f"{hub.sandbox.hubspot_api_url}/oauth/v1/token"
    assert provider.refresh_refused(400, {"status": "BAD_REFRESH_TOKEN", "message": "x"})
    assert provider.refresh_refused(400, {"error": "invalid_grant"})
    assert not provider.refresh_refused(400, {"status": "BAD_CLIENT_ID", "error": "invalid_client"})
    assert provider.rate_limit.windows[0].limit == 110
    assert provider.rate_limit.search_result_cap == 10_000
