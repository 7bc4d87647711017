"""SalesforceCrmClient and SalesforceProvider against the Salesforce sandbox, over real HTTPS.

Tokens come from ``SandboxTokens``, a real ``TokenSource`` that refreshes at the sandbox's login
host; every HTTP attempt lands in a ``CallLog``. Assertions look at what a caller sees (the
``Result``) and at what the sandbox received (its counters).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from core.errors import ErrorCode, ProviderAuthError
from integrations.providers.base import TokenSet
from integrations.providers.hubspot.client import HubSpotCrmClient
from integrations.providers.hubspot.provider import HubSpotProvider
from integrations.providers.registry import get_provider
from integrations.providers.salesforce import catalog
from integrations.providers.salesforce.client import SalesforceCrmClient
from integrations.providers.salesforce.provider import SalesforceProvider, org_id_of
from integrations.providers.unified import (
    Association,
    Company,
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

pytestmark = pytest.mark.asyncio

SF_CLIENT_ID = "sandbox-salesforce-client"
SF_CLIENT_SECRET = "sandbox-salesforce-secret"
DATA = "/services/data/v62.0"
VERSIONED = "/services/data/vXX.X"  # how the sandbox's counters name the version
MISSING_ID = {"contact": "003Dn0000009999AAA", "company": "001Dn0000009999AAA"}


class Harness:
    def __init__(self, sandbox: Any, provider: SalesforceProvider, minted: dict[str, Any]) -> None:
        self.sandbox = sandbox
        self.provider = provider
        self.minted = minted
        self.tokens = SandboxTokens(
            provider,
            minted,
            token_url=f"{sandbox.url}/salesforce/login/services/oauth2/token",
            client_id=SF_CLIENT_ID,
            client_secret=SF_CLIENT_SECRET,
        )
        self.log = CallLog()
        self.client = self.build()

    def build(self, **kwargs: Any) -> SalesforceCrmClient:
        options: dict[str, Any] = {
            "tokens": self.tokens,
            "record_call": self.log,
            "instance_url": self.minted["instance_url"],
            "api_version": "62.0",
            "ca_file": self.sandbox.ca_file,
            "rate_limit": self.provider.rate_limit,
            "org_id": org_id_of(self.minted["id"]),
        }
        return SalesforceCrmClient(**(options | kwargs))

    def requests(self, key: str) -> int:
        return int(self.sandbox.counters()["requests"].get(key, 0))


@pytest.fixture(autouse=True)
def fresh_field_lists() -> None:
    # Field lists are cached per org for minutes; each test starts from a freshly reset sandbox.
    catalog.forget()


@pytest.fixture
def sf(sandbox: Any, sandbox_settings: Any) -> Harness:
    provider = get_provider("salesforce")
    assert isinstance(provider, SalesforceProvider)
    return Harness(sandbox, provider, sandbox.sf_mint_token(org="acme"))


SOBJECT = {"contact": "Contact", "company": "Account", "deal": "Opportunity"}

# --- records ---------------------------------------------------------------------------------

INPUTS: dict[str, tuple[RecordIn, RecordIn, dict[str, Any]]] = {
    "contact": (
        ContactIn(first_name="Ada", last_name="Lovelace", job_title="Analyst", phone="+44 20 1"),
        ContactIn(job_title="Chief Analyst", phone=None),
        {"first_name": "Ada", "job_title": "Chief Analyst", "phone": None},
    ),
    "company": (
        CompanyIn(name="Acme", domain="acme.test", industry="Technology", employees=250),
        CompanyIn(employees=300, industry="Manufacturing"),
        {"name": "Acme", "employees": 300, "industry": "Manufacturing", "domain": "acme.test"},
    ),
    "deal": (
        DealIn(
            name="Renewal",
            amount=Decimal("1500.50"),
            stage="Prospecting",
            close_date=date(2024, 6, 30),
        ),
        DealIn(stage="Closed Won", amount=Decimal("2000")),
        {
            "name": "Renewal",
            "stage": "Closed Won",
            "amount": Decimal("2000"),
            "close_date": date(2024, 6, 30),
        },
    ),
}


@pytest.mark.parametrize("object_type", ["contact", "company", "deal"])
async def test_create_get_update_archive(sf: Harness, object_type: ObjectType):
    data, change, expected = INPUTS[object_type]
    if isinstance(data, ContactIn):
        data = data.model_copy(update={"email": email()})
    client, name = sf.client, SOBJECT[object_type]

    created = ok(await client.create(object_type, data))
    assert created.id.startswith({"contact": "003", "company": "001", "deal": "006"}[object_type])
    assert len(created.id) == 18
    assert created.created_at is not None
    assert created.properties["Id"] == created.id
    fetched = ok(await client.get(object_type, created.id))
    assert fetched == created
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
    again = await client.archive(object_type, created.id)
    assert again.error_code == ErrorCode.NOT_FOUND
    archived = ok(await client.list(object_type, archived=True))
    assert [r.id for r in archived.results] == [created.id]
    assert archived.results[0].archived is True
    assert ok(await client.list(object_type)).results == []

    query = ("GET", f"{DATA}/query/", 200, 1, None)
    assert sf.log.summary()[:6] == [
        ("POST", f"{DATA}/sobjects/{name}/", 201, 1, None),
        query,  # the create is read back
        query,
        ("PATCH", f"{DATA}/sobjects/{name}/{created.id}", 204, 1, None),
        query,
        query,
    ]
    assert sf.log.summary()[6:9] == [
        ("DELETE", f"{DATA}/sobjects/{name}/{created.id}", 204, 1, None),
        query,
        ("DELETE", f"{DATA}/sobjects/{name}/{created.id}", 404, 1, "not_found"),
    ]
    assert sf.log.summary()[9] == ("GET", f"{DATA}/queryAll/", 200, 1, None)
    describes = [c for c in sf.log.calls if c.path.endswith("/describe")]
    assert [c.path for c in describes] == [f"{DATA}/sobjects/{name}/describe"]  # cached after


async def test_a_write_is_not_failed_by_its_read_back(sf: Harness):
    sf.sandbox.sf_limits(daily=1)  # the create passes; describing Account to read it back does not

    created = ok(await sf.client.create("company", CompanyIn(name="Kept", employees=5)))

    assert (created.name, created.employees) == ("Kept", 5)  # built from what was sent
    assert created.created_at is None
    assert created.id.startswith("001")
    assert [(c.status, c.error_code) for c in sf.log.calls] == [(201, None), (403, "rate_limited")]


async def test_custom_fields_pass_through_both_ways(sf: Harness):
    data = ContactIn(last_name="Hopper", properties={"Favorite_Color__c": "teal"})
    created = ok(await sf.client.create("contact", data))
    assert created.properties["Favorite_Color__c"] == "teal"
    assert ok(await sf.client.get("contact", created.id)).properties["Favorite_Color__c"] == "teal"

    change = RecordIn(properties={"favorite_color__c": "navy"})  # Salesforce ignores case
    ok(await sf.client.update("contact", created.id, change))
    reread = ok(await sf.client.get("contact", created.id))
    assert reread.properties["Favorite_Color__c"] == "navy"
    assert reread.last_name == "Hopper"  # unset unified fields are left alone

    # A set unified field wins over the same raw field; explicit None clears.
    both = ContactIn(first_name="Typed", job_title=None, properties={"FirstName": "Raw"})
    merged = ok(await sf.client.update("contact", created.id, both))
    assert (merged.first_name, merged.job_title) == ("Typed", None)
    found = ok(
        await sf.client.search(
            "contact",
            SearchQuery(filter_groups=[[SearchFilter(field="Favorite_Color__c", value="navy")]]),
        )
    )
    assert [r.id for r in found.results] == [created.id]


# --- lists -----------------------------------------------------------------------------------


def inputs_for(object_type: ObjectType, count: int) -> list[RecordIn]:
    if object_type == "contact":
        return [ContactIn(last_name=f"Person {i}", email=email()) for i in range(count)]
    if object_type == "company":
        return [CompanyIn(name=f"Co {i}") for i in range(count)]
    return [
        DealIn(name=f"Deal {i}", stage="Prospecting", close_date=date(2025, 1, 1))
        for i in range(count)
    ]


@pytest.mark.parametrize("object_type", ["contact", "company", "deal"])
async def test_list_pages_through_every_record_once(sf: Harness, object_type: ObjectType):
    made = ok(await sf.client.batch_create(object_type, inputs_for(object_type, 5)))
    assert made.errors == []
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = ok(await sf.client.list(object_type, limit=2, cursor=cursor))
        pages += 1
        assert len(page.results) <= 2
        seen += [r.id for r in page.results]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == 3
    assert seen == sorted(r.id for r in made.results)  # Id order, each record once
    everything = ok(await sf.client.list(object_type, limit=500))
    assert len(everything.results) == 5
    assert everything.next_cursor is None

    for record in made.results[:2]:
        ok(await sf.client.archive(object_type, record.id))
    archived = ok(await sf.client.list(object_type, archived=True, limit=1))
    assert len(archived.results) == 1
    rest = ok(await sf.client.list(object_type, archived=True, cursor=archived.next_cursor))
    assert sorted(r.id for r in archived.results + rest.results) == sorted(
        r.id for r in made.results[:2]
    )
    assert all(r.archived for r in rest.results)
    assert len(ok(await sf.client.list(object_type)).results) == 3

    bad = await sf.client.list(object_type, cursor="x' OR Id != '")
    assert bad.error_code == ErrorCode.VALIDATION_FAILED


# --- search ----------------------------------------------------------------------------------


async def make_people(sf: Harness) -> dict[str, Contact]:
    people = [
        ("Ann", "Lee", "Technology"),
        ("Bob", "Lee", "Retail"),
        ("Cid", "Moss", "Retail"),
        ("Dee", "Lee", None),
        ("Eve", "Lee", "Retail"),
        ("Fay", "O'Brien", None),
    ]
    made = ok(
        await sf.client.batch_create(
            "contact",
            [
                ContactIn(
                    first_name=first,
                    last_name=last,
                    email=f"{first.lower()}-{uuid.uuid4().hex[:6]}@acme.test",
                    properties={"Department": dept} if dept else {},
                )
                for first, last, dept in people
            ],
        )
    )
    assert made.errors == []
    return {r.first_name: r for r in made.results}


async def test_search_with_filters_sort_and_paging(sf: Harness):
    await make_people(sf)
    query = SearchQuery(
        filter_groups=[
            [
                SearchFilter(field="last_name", operator="eq", value="lee"),  # case-insensitive
                SearchFilter(field="email", operator="contains", value="@acme.test"),
            ]
        ],
        sort=[SearchSort(field="first_name", direction="desc")],
        limit=3,
    )
    first = ok(await sf.client.search("contact", query))
    assert [r.first_name for r in first.results] == ["Eve", "Dee", "Bob"]
    assert first.next_cursor is not None
    second = ok(
        await sf.client.search("contact", query.model_copy(update={"cursor": first.next_cursor}))
    )
    assert [r.first_name for r in second.results] == ["Ann"]
    assert second.next_cursor is None

    ors = SearchQuery(
        filter_groups=[
            [SearchFilter(field="first_name", operator="eq", value="Cid")],
            [SearchFilter(field="FirstName", operator="in", value=["Ann", "Bob"])],
        ],
        sort=[SearchSort(field="first_name")],
    )
    assert [r.first_name for r in ok(await sf.client.search("contact", ors)).results] == [
        "Ann",
        "Bob",
        "Cid",
    ]
    text = ok(await sf.client.search("contact", SearchQuery(query="bri")))
    assert [r.first_name for r in text.results] == ["Fay"]

    # Sorting on a field with empty values pages through them too (nulls first ascending).
    by_department: list[str] = []
    cursor = None
    while True:
        page = ok(
            await sf.client.search(
                "contact",
                SearchQuery(sort=[SearchSort(field="Department")], limit=2, cursor=cursor),
            )
        )
        by_department += [r.first_name for r in page.results]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert sorted(by_department[:2]) == ["Dee", "Fay"]
    assert by_department[2:] == ["Bob", "Cid", "Eve", "Ann"]  # Retail (by Id), Technology
    assert sf.log.summary()[-1] == ("GET", f"{DATA}/query/", 200, 1, None)


async def test_search_injection_attempts_stay_literals(sf: Harness):
    people = await make_people(sf)
    for value in ("x' OR LastName != '", "Lee' OR FirstName != 'x", "\\' OR Id != null --"):
        query = SearchQuery(filter_groups=[[SearchFilter(field="last_name", value=value)]])
        assert ok(await sf.client.search("contact", query)).results == []
    assert ok(await sf.client.search("contact", SearchQuery(query="%"))).results == []
    quoted = SearchQuery(filter_groups=[[SearchFilter(field="last_name", value="O'Brien")]])
    assert [r.id for r in ok(await sf.client.search("contact", quoted)).results] == [
        people["Fay"].id
    ]
    sf.log.calls.clear()
    hostile_field = SearchQuery(
        filter_groups=[[SearchFilter(field="LastName != null OR Id", value="x")]]
    )
    refused = await sf.client.search("contact", hostile_field)
    assert refused.error_code == ErrorCode.VALIDATION_FAILED
    assert sf.log.calls == []  # refused before any query was sent


async def test_search_on_an_unknown_field_fails_before_querying(sf: Harness):
    query = SearchQuery(filter_groups=[[SearchFilter(field="No_Such__c", value="x")]])
    result = await sf.client.search("company", query)
    assert result.error_code == ErrorCode.VALIDATION_FAILED
    assert fails(result).details["fields"] == {"No_Such__c": "no such field on Account"}
    assert sf.log.summary(describes=True) == [
        ("GET", f"{DATA}/sobjects/Account/describe", 200, 1, None)
    ]
    wrong_type = SearchQuery(
        filter_groups=[[SearchFilter(field="close_date", operator="gt", value="next week")]]
    )
    refused = await sf.client.search("deal", wrong_type)
    assert refused.error_code == ErrorCode.VALIDATION_FAILED
    assert "filter_groups[0][0]" in fails(refused).details["fields"]
    unmapped = await sf.client.search(
        "contact", SearchQuery(sort=[SearchSort(field="lifecycle_stage")])
    )
    assert fails(unmapped).details["fields"] == {"lifecycle_stage": "no Salesforce field"}


# --- batches ---------------------------------------------------------------------------------


async def test_batch_create_450_contacts_in_three_collection_calls(sf: Harness):
    key = f"POST {VERSIONED}/composite/sobjects"
    items: list[RecordIn] = [
        ContactIn(last_name=f"Person {i}", email=f"p{i}-{uuid.uuid4().hex[:6]}@acme.test")
        for i in range(450)
    ]
    items[7] = ContactIn(first_name="No last name")
    items[210] = ContactIn(last_name="Bad email", email="not-an-email")
    items[300] = CompanyIn(name="wrong type")  # never sent
    items[449] = ContactIn(last_name="Lost", company_id=MISSING_ID["company"])

    result = ok(await sf.client.batch_create("contact", items))

    assert sf.requests(key) == 3
    assert [(e.index, e.code) for e in result.errors] == [
        (7, "validation_failed"),
        (210, "validation_failed"),
        (300, "validation_failed"),
        (449, "validation_failed"),
    ]
    assert result.errors[0].details["fields"] == {
        "LastName": "Required fields are missing: [LastName]"
    }
    assert list(result.errors[1].details["fields"]) == ["Email"]
    assert "ContactIn" in result.errors[2].message
    assert list(result.errors[3].details["fields"]) == ["AccountId"]
    failed = {7, 210, 300, 449}
    expected = [f"Person {i}" for i in range(450) if i not in failed]
    assert [r.last_name for r in result.results] == expected  # in input order
    assert len({r.id for r in result.results}) == 446
    assert all(r.created_at is not None for r in result.results)  # read back, not echoed
    composite = [c for c in sf.log.calls if c.path.endswith("/composite/sobjects")]
    assert [(c.method, c.status) for c in composite] == [("POST", 200)] * 3
    assert len(ok(await sf.client.list("contact", limit=200)).results) == 200


async def test_batch_update_with_missing_and_invalid_records(sf: Harness):
    made = ok(await sf.client.batch_create("company", inputs_for("company", 3)))
    ids = [r.id for r in made.results]
    items: list[tuple[str, RecordIn]] = [
        (ids[0], CompanyIn(employees=10)),
        (MISSING_ID["company"], CompanyIn(employees=11)),
        (ids[2], CompanyIn(employees=12, properties={"AnnualRevenue": "lots"})),
        ("not-an-id", CompanyIn(employees=13)),
        (ids[1], CompanyIn(industry="Retail")),
    ]
    result = ok(await sf.client.batch_update("company", items))

    assert [(r.id, r.employees, r.industry) for r in result.results] == [
        (ids[0], 10, None),
        (ids[1], None, "Retail"),
    ]
    assert [(e.index, e.code) for e in result.errors] == [
        (1, "not_found"),
        (2, "validation_failed"),
        (3, "not_found"),
    ]
    assert list(result.errors[1].details["fields"]) == ["AnnualRevenue"]
    assert sf.requests(f"PATCH {VERSIONED}/composite/sobjects") == 1
    assert ok(await sf.client.get("company", ids[2])).employees is None  # nothing written


async def test_batch_stops_at_a_systemic_failure_and_keeps_what_was_written(sf: Harness):
    small = sf.build(rate_limit=sf.provider.rate_limit.model_copy(update={"batch_size": 2}))
    ok(await small.list("company"))  # the describe is cached before the budget runs out
    used = sf.log.calls[-1].budget_used
    assert used is not None
    sf.sandbox.sf_limits(daily=used + 2)  # chunk 1 and its read-back, then nothing

    result = ok(await small.batch_create("company", [CompanyIn(name=f"c{i}") for i in range(5)]))

    assert [r.name for r in result.results] == ["c0", "c1"]
    assert [(e.index, e.code) for e in result.errors] == [(i, "rate_limited") for i in (2, 3, 4)]
    assert all(e.details["retry_after"] == 900 for e in result.errors)
    assert result.errors[0].message.startswith("Not written: ")
    assert sf.requests(f"POST {VERSIONED}/composite/sobjects") == 2  # the third never sent


async def test_batch_failing_before_anything_was_written_fails_whole(sf: Harness):
    sf.sandbox.faults(fail_next=1, fail_status=503)
    result = await sf.client.batch_create("company", inputs_for("company", 4))
    assert result.error_code == ErrorCode.PROVIDER_UNAVAILABLE
    assert ok(await sf.client.list("company")).results == []


# --- associations ----------------------------------------------------------------------------


async def test_contact_and_deal_to_company_through_account_id(sf: Harness):
    company = ok(await sf.client.create("company", CompanyIn(name="Acme")))
    other = ok(await sf.client.create("company", CompanyIn(name="Globex")))
    contact = ok(await sf.client.create("contact", ContactIn(last_name="Lee")))
    assert ok(await sf.client.associations("contact", contact.id, "company")) == []

    ok(
        await sf.client.associate(
            Association(
                from_type="contact", from_id=contact.id, to_type="company", to_id=company.id
            )
        )
    )
    assert ok(await sf.client.associations("contact", contact.id, "company")) == [company.id]
    fetched = ok(await sf.client.get("contact", contact.id))
    assert isinstance(fetched, Contact)
    assert fetched.company_id == company.id

    deal = ok(
        await sf.client.create(
            "deal",
            DealIn(
                name="D1", stage="Prospecting", close_date=date(2025, 3, 1), company_id=other.id
            ),
        )
    )
    assert isinstance(deal, Deal)
    assert deal.company_id == other.id
    # From the company's side: the same lookup, set on the deal.
    ok(
        await sf.client.associate(
            Association(from_type="company", from_id=company.id, to_type="deal", to_id=deal.id)
        )
    )
    assert ok(await sf.client.associations("deal", deal.id, "company")) == [company.id]
    assert sorted(ok(await sf.client.associations("company", company.id, "contact"))) == [
        contact.id
    ]
    assert ok(await sf.client.associations("company", company.id, "deal")) == [deal.id]
    assert ok(await sf.client.associations("company", other.id, "deal")) == []

    missing = await sf.client.associate(
        Association(
            from_type="contact", from_id=contact.id, to_type="company", to_id=MISSING_ID["company"]
        )
    )
    assert missing.error_code == ErrorCode.NOT_FOUND
    assert MISSING_ID["company"] in fails(missing).message
    unsupported = await sf.client.associate(
        Association(from_type="company", from_id=company.id, to_type="company", to_id=other.id)
    )
    assert unsupported.error_code == ErrorCode.VALIDATION_FAILED


async def test_contact_and_deal_through_opportunity_contact_roles(sf: Harness):
    key = f"POST {VERSIONED}/sobjects/OpportunityContactRole"
    deal = ok(
        await sf.client.create(
            "deal", DealIn(name="D", stage="Prospecting", close_date=date(2025, 3, 1))
        )
    )
    people = ok(await sf.client.batch_create("contact", inputs_for("contact", 2))).results
    link = Association(from_type="contact", from_id=people[0].id, to_type="deal", to_id=deal.id)

    ok(await sf.client.associate(link))
    ok(await sf.client.associate(link))  # already linked: nothing new
    ok(
        await sf.client.associate(
            Association(from_type="deal", from_id=deal.id, to_type="contact", to_id=people[1].id)
        )
    )

    assert sum(v for k, v in sf.sandbox.counters()["requests"].items() if k.startswith(key)) == 2
    assert sorted(ok(await sf.client.associations("deal", deal.id, "contact"))) == sorted(
        p.id for p in people
    )
    assert ok(await sf.client.associations("contact", people[0].id, "deal")) == [deal.id]
    gone = await sf.client.associate(
        Association(
            from_type="contact", from_id=MISSING_ID["contact"], to_type="deal", to_id=deal.id
        )
    )
    assert gone.error_code == ErrorCode.NOT_FOUND
    assert MISSING_ID["contact"] in fails(gone).message


# --- auth ------------------------------------------------------------------------------------


async def test_expired_session_refreshes_once_then_succeeds(sf: Harness):
    created = ok(await sf.client.create("company", CompanyIn(name="Acme")))
    sf.log.calls.clear()
    old = sf.tokens.current
    assert sf.sandbox.sf_expire_tokens() >= 1

    fetched = ok(await sf.client.get("company", created.id))

    assert fetched.name == "Acme"
    assert sf.tokens.refreshes == 1
    assert sf.tokens.current != old
    assert sf.sandbox.counters()["token_grants"]["salesforce:refresh_token"] == 1
    assert sf.log.summary() == [
        ("GET", f"{DATA}/query/", 401, 1, "unauthenticated"),
        ("GET", f"{DATA}/query/", 200, 2, None),
    ]
    ok(await sf.client.get("company", created.id))
    assert sf.tokens.refreshes == 1  # the new token keeps working


async def test_refused_refresh_is_reauth_required(sf: Harness):
    sf.sandbox.sf_expire_tokens()
    sf.sandbox.sf_revoke_tokens(refresh_token=sf.tokens.refresh_token)

    result = await sf.client.list("contact")

    assert result.error_code == ErrorCode.REAUTH_REQUIRED
    assert sf.tokens.refreshes == 1
    assert sf.log.summary(describes=True) == [
        ("GET", f"{DATA}/sobjects/Contact/describe", 401, 1, "unauthenticated")
    ]


class StaleTokens(SandboxTokens):
    """Refreshes into a token Salesforce does not know: the retry gets a second 401."""

    async def refresh(self, rejected: str) -> str:
        self.refreshes += 1
        self.current = "00Dxx0000000000!AQ-unknown"
        return self.current


async def test_a_second_401_is_reauth_required_after_exactly_one_refresh(sf: Harness):
    tokens = StaleTokens(
        sf.provider,
        sf.minted,
        token_url=sf.tokens.token_url,
        client_id=SF_CLIENT_ID,
        client_secret=SF_CLIENT_SECRET,
    )
    sf.sandbox.sf_expire_tokens()
    client = sf.build(tokens=tokens)

    result = await client.get("contact", MISSING_ID["contact"])

    assert result.error_code == ErrorCode.REAUTH_REQUIRED
    assert tokens.refreshes == 1
    assert [(c.status, c.attempt, c.error_code) for c in sf.log.calls] == [
        (401, 1, "unauthenticated"),
        (401, 2, "reauth_required"),
    ]
    error = fails(result)
    assert sf.minted["access_token"] not in error.message + repr(error.details)


async def test_no_instance_url_is_reauth_required_without_a_call(sf: Harness):
    result = await sf.build(instance_url=None).list("contact")
    assert result.error_code == ErrorCode.REAUTH_REQUIRED
    assert sf.log.calls == []


# --- failures --------------------------------------------------------------------------------


async def test_request_limit_exceeded_is_rate_limited(sf: Harness):
    ok(await sf.client.list("company"))
    used = sf.log.calls[-1].budget_used
    assert used is not None
    sf.sandbox.sf_limits(daily=used)

    result = await sf.client.list("company")

    assert result.error_code == ErrorCode.RATE_LIMITED
    error = fails(result)
    assert error.retryable
    assert error.retry_after == 900
    assert error.details["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    assert sf.log.summary()[-1] == ("GET", f"{DATA}/query/", 403, 1, "rate_limited")

    sf.sandbox.sf_limits(daily=15_000)
    sf.sandbox.faults(rate_limit_next=1)  # the concurrent long-running request limit
    brief = await sf.client.list("company")
    assert brief.error_code == ErrorCode.RATE_LIMITED
    assert fails(brief).retry_after == 30


@pytest.mark.parametrize("status", [500, 503])
async def test_5xx_is_provider_unavailable(sf: Harness, status: int):
    sf.sandbox.faults(fail_next=1, fail_status=status)
    result = await sf.client.create("company", CompanyIn(name="Acme"))
    assert result.error_code == ErrorCode.PROVIDER_UNAVAILABLE
    assert fails(result).retryable
    assert sf.log.summary() == [
        ("POST", f"{DATA}/sobjects/Account/", status, 1, "provider_unavailable")
    ]
    assert ok(await sf.client.create("company", CompanyIn(name="Acme"))).name == "Acme"


async def test_timeout_is_provider_unavailable(sf: Harness):
    client = sf.build(timeout=0.5)
    ok(await client.list("deal"))  # field list cached
    sf.log.calls.clear()
    sf.sandbox.faults(timeout_next=1, timeout_seconds=10)
    started = time.monotonic()

    result = await client.list("deal")

    assert time.monotonic() - started < 5
    assert result.error_code == ErrorCode.PROVIDER_UNAVAILABLE
    assert fails(result).details["timed_out"] is True
    assert sf.log.summary() == [("GET", f"{DATA}/query/", None, 1, "provider_unavailable")]


async def test_nothing_listening_is_provider_unavailable(sf: Harness):
    from tests.processes import free_port

    client = sf.build(instance_url=f"https://127.0.0.1:{free_port()}")
    result = await client.get("contact", MISSING_ID["contact"])
    assert result.error_code == ErrorCode.PROVIDER_UNAVAILABLE
    assert fails(result).details["timed_out"] is False


async def test_the_sandbox_ca_is_trusted_only_when_configured(sf: Harness):
    result = await sf.build(ca_file=None).list("contact")
    assert result.error_code == ErrorCode.PROVIDER_UNAVAILABLE  # TLS verification failed


async def test_validation_errors_name_the_fields(sf: Harness):
    missing = await sf.client.create("contact", ContactIn(first_name="No last name"))
    assert missing.error_code == ErrorCode.VALIDATION_FAILED
    assert fails(missing).details["fields"] == {
        "LastName": "Required fields are missing: [LastName]"
    }
    assert "LastName" in fails(missing).message

    unknown = await sf.client.create(
        "contact", ContactIn(last_name="L", properties={"Shoe_Size__c": 44})
    )
    assert list(fails(unknown).details["fields"]) == ["Shoe_Size__c"]

    wrong = await sf.client.create(
        "deal",
        DealIn(
            name="D",
            stage="Prospecting",
            close_date=date(2025, 1, 1),
            properties={"Probability": "most"},
        ),
    )
    assert fails(wrong).details["error_code"] == "JSON_PARSER_ERROR"
    assert list(fails(wrong).details["fields"]) == ["Probability"]

    read_only = await sf.client.update(
        "contact",
        ok(await sf.client.create("contact", ContactIn(last_name="L"))).id,
        RecordIn(properties={"CreatedDate": "2020-01-01T00:00:00Z"}),
    )
    assert list(fails(read_only).details["fields"]) == ["CreatedDate"]
    assert sf.log.summary()[0] == ("POST", f"{DATA}/sobjects/Contact/", 400, 1, "validation_failed")


async def test_every_call_reports_the_orgs_api_usage(sf: Harness):
    sf.sandbox.sf_limits(daily=5000)
    ok(await sf.client.create("company", CompanyIn(name="Acme")))
    ok(await sf.client.list("company"))
    refused = await sf.client.archive("company", MISSING_ID["company"])
    assert refused.error_code == ErrorCode.NOT_FOUND

    assert sf.log.calls[-1].status == 404
    assert all(c.budget_limit == 5000 for c in sf.log.calls)
    used = [c.budget_used for c in sf.log.calls if c.budget_used is not None]
    assert len(used) == len(sf.log.calls) == 5  # create, describe, read-back, list, delete
    assert used == sorted(used)
    assert used[-1] - used[0] == len(used) - 1  # each call counted once, the failed one too


async def test_sdk_calls_run_off_the_event_loop(sf: Harness):
    ok(await sf.client.list("contact"))
    sf.sandbox.faults(latency_ms=400)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.02)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        ok(await sf.client.list("contact"))
    finally:
        ticker.cancel()
    assert ticks >= 10  # the loop kept running while the call waited


# --- raw passthrough -------------------------------------------------------------------------


async def test_raw_request_passthrough(sf: Harness):
    limits = ok(await sf.client.request("GET", "/limits"))
    assert limits.status == 200
    assert limits.body["DailyApiRequests"]["Max"] == 15_000
    assert "api-usage=" in limits.headers["sforce-limit-info"]

    sf.sandbox.sf_expire_tokens()
    created = ok(await sf.client.request("POST", f"{DATA}/sobjects/Account", json={"Name": "Raw"}))
    assert created.status == 201
    assert sf.tokens.refreshes == 1
    listed = ok(
        await sf.client.request("GET", "/query", params={"q": "SELECT Id, Name FROM Account"})
    )
    assert [r["Name"] for r in listed.body["records"]] == ["Raw"]

    missing = await sf.client.request(
        "GET", f"/sobjects/Account/{MISSING_ID['company']}?fields=Name"
    )
    assert missing.error_code == ErrorCode.NOT_FOUND
    assert sf.log.summary() == [
        ("GET", f"{DATA}/limits", 200, 1, None),
        ("POST", f"{DATA}/sobjects/Account", 401, 1, "unauthenticated"),
        ("POST", f"{DATA}/sobjects/Account", 201, 2, None),
        ("GET", f"{DATA}/query", 200, 1, None),  # no query string
        ("GET", f"{DATA}/sobjects/Account/{MISSING_ID['company']}", 404, 1, "not_found"),
    ]

    for path in ("https://evil.test/steal", "//evil.test/steal", "limits", "/../../id/x"):
        refused = await sf.client.request("GET", path)
        assert refused.error_code == ErrorCode.VALIDATION_FAILED
    assert len(sf.log.calls) == 5  # refused paths never left the process


async def test_recorded_calls_carry_no_host_query_or_token(sf: Harness):
    query = SearchQuery(filter_groups=[[SearchFilter(field="email", value="secret@acme.test")]])
    ok(await sf.client.search("contact", query))
    for call in sf.log.calls:
        assert call.path.startswith(f"{DATA}/")
        assert "secret" not in call.path
        assert "?" not in call.path
        assert sf.tokens.current not in repr(call)
        assert call.duration_ms > 0


# --- the provider ----------------------------------------------------------------------------


async def test_fetch_identity_reads_the_org(sf: Harness):
    tokens = sf.provider.parse_token_response(sf.minted, now=datetime.now(UTC))
    identity = ok(await sf.provider.fetch_identity(tokens))
    assert identity.external_id.startswith("00D")
    assert len(identity.external_id) == 18
    assert identity.external_id == org_id_of(sf.minted["id"])
    assert identity.display_name == "Acme Corp (sandbox)"
    assert identity.user == "admin@acme-sandbox.test"
    assert identity.scopes == tokens.scopes
    assert identity.extra == {
        "user_id": sf.minted["id"].rstrip("/").split("/")[-1],
        "organization_id": identity.external_id,
        "instance_url": sf.minted["instance_url"],
    }

    sf.sandbox.sf_expire_tokens()
    expired = await sf.provider.fetch_identity(tokens)
    assert expired.error_code == ErrorCode.REAUTH_REQUIRED


async def test_fetch_identity_falls_back_to_the_instance_host(sf: Harness):
    tokens = sf.provider.parse_token_response(sf.minted, now=datetime.now(UTC))
    sf.sandbox.sf_limits(daily=1, used=1)  # REST calls refused; the identity URL is not REST
    identity = ok(await sf.provider.fetch_identity(tokens))
    assert identity.display_name == "127.0.0.1"


async def test_revoke_and_revoking_twice(sf: Harness):
    tokens = TokenSet(
        access_token=sf.minted["access_token"],
        refresh_token=sf.minted["refresh_token"],
        extra={"login_url": sf.sandbox.sf_login_url},
    )
    ok(await sf.provider.revoke(tokens))
    ok(await sf.provider.revoke(tokens))  # already revoked (invalid_token) is done
    refused = await sf.client.get("contact", MISSING_ID["contact"])
    assert refused.error_code == ErrorCode.REAUTH_REQUIRED  # its access token went too


async def test_provider_builds_the_client_from_token_facts(sf: Harness):
    client = sf.provider.crm_client(
        tokens=sf.tokens,
        record_call=sf.log,
        token_extra={"instance_url": sf.minted["instance_url"], "id_url": sf.minted["id"]},
    )
    assert isinstance(client, SalesforceCrmClient)
    created = ok(await client.create("company", CompanyIn(name="Wired")))
    assert isinstance(created, Company)
    assert sf.provider.login_url("sandbox") == sf.sandbox.sf_test_url
    assert sf.provider.login_url("my_domain", "acme.my.salesforce.com") == (
        sf.sandbox.sf_my_domain_url("acme.my.salesforce.com")
    )


# --- one unified shape -----------------------------------------------------------------------


async def test_the_same_create_gives_the_same_unified_shape_as_hubspot(sf: Harness):
    hub_provider = get_provider("hubspot")
    assert isinstance(hub_provider, HubSpotProvider)
    minted = sf.sandbox.mint_token()
    hubspot = HubSpotCrmClient(
        tokens=_HubSpotTokens(minted["access_token"]),
        api_url=hub_provider.config.api_url,
        rate_limit=hub_provider.rate_limit,
    )
    data = ContactIn(
        first_name="Ada",
        last_name="Lovelace",
        email=email(),
        phone="+44 20 1234",
        job_title="Analyst",
    )

    made = [ok(await hubspot.create("contact", data)), ok(await sf.client.create("contact", data))]
    read = [
        ok(await hubspot.get("contact", made[0].id)),
        ok(await sf.client.get("contact", made[1].id)),
    ]

    for one, other in (made, read):
        assert type(one) is type(other) is Contact
        assert set(one.model_dump()) == set(other.model_dump())
        # Salesforce makes the creating user the owner; HubSpot leaves a contact unowned.
        own = {"id", "properties", "created_at", "updated_at", "owner_id"}
        shared = one.model_dump(exclude=own)
        assert shared == other.model_dump(exclude=own)
        assert (one.owner_id, other.owner_id is not None) == (None, True)
        assert shared["email"] == data.email
        assert shared["archived"] is False
        assert one.created_at is not None
        assert other.created_at is not None


class _HubSpotTokens:
    def __init__(self, token: str) -> None:
        self.token = token

    async def access_token(self) -> str:
        return self.token

    async def refresh(self, rejected: str) -> str:
        raise ProviderAuthError("not in this test")
