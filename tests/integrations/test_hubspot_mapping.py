"""HubSpot <-> unified mapping, both ways, and HubSpot answers -> our errors. No network."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hubspot.crm.objects import (
    AssociatedId,
    CollectionResponseAssociatedId,
    SimplePublicObjectWithAssociations,
)

from core.errors import ErrorCode, ValidationFailed
from integrations.providers.hubspot.errors import HttpFailure, error_for_answer, field_errors
from integrations.providers.hubspot.mapping import (
    company_to_associate,
    read_properties,
    search_property,
    to_properties,
    to_record,
)
from integrations.providers.hubspot.search import search_request, to_sdk
from integrations.providers.hubspot.wire import HubSpotError, HubSpotObject, from_sdk
from integrations.providers.unified import (
    Company,
    CompanyIn,
    Contact,
    ContactIn,
    Deal,
    DealIn,
    RecordIn,
    SearchFilter,
    SearchQuery,
    SearchSort,
)

CREATED = "2024-01-17T19:55:04.281Z"
UPDATED = "2024-02-01T08:00:00.000Z"


def hubspot_object(props: dict[str, str | None], **extra: object) -> HubSpotObject:
    raw = {"id": "101", "properties": props, "createdAt": CREATED, "updatedAt": UPDATED}
    return HubSpotObject.model_validate(raw | extra)


# --- HubSpot -> unified ----------------------------------------------------------------


def test_contact_fields_come_from_hubspot_properties_and_raw_properties_stay_untouched():
    props: dict[str, str | None] = {
        "email": "ada@example.com",
        "firstname": "Ada",
        "lastname": "Lovelace",
        "phone": "+44 20 7946 0000",
        "jobtitle": "Analyst",
        "lifecyclestage": "lead",
        "associatedcompanyid": "555",
        "favorite_color": "teal",  # custom: only in properties
        "hs_object_id": "101",
    }
    record = to_record("contact", hubspot_object(props))

    assert isinstance(record, Contact)
    assert (record.id, record.email, record.first_name, record.last_name) == (
        "101",
        "ada@example.com",
        "Ada",
        "Lovelace",
    )
    assert (record.phone, record.job_title, record.lifecycle_stage) == (
        "+44 20 7946 0000",
        "Analyst",
        "lead",
    )
    assert record.company_id == "555"
    assert record.created_at == datetime(2024, 1, 17, 19, 55, 4, 281000, tzinfo=UTC)
    assert record.updated_at == datetime(2024, 2, 1, 8, tzinfo=UTC)
    assert record.archived is False
    assert record.properties == props


def test_company_numbers_parse_and_empty_strings_read_as_unset():
    obj = hubspot_object(
        {"name": "Acme", "domain": "", "industry": None, "numberofemployees": "250"},
        archived=True,
    )
    record = to_record("company", obj)

    assert isinstance(record, Company)
    assert record.name == "Acme"
    assert record.domain is None
    assert record.industry is None
    assert record.employees == 250
    assert record.archived is True
    assert record.properties["domain"] == ""  # raw value kept as HubSpot sent it


def test_unparseable_values_leave_the_unified_field_empty_but_keep_the_raw_value():
    record = to_record("company", hubspot_object({"numberofemployees": "about ten"}))
    assert isinstance(record, Company)
    assert record.employees is None
    assert record.properties["numberofemployees"] == "about ten"


@pytest.mark.parametrize(
    ("closedate", "expected"),
    [
        ("2024-06-30T00:00:00.000Z", date(2024, 6, 30)),
        ("2024-06-30", date(2024, 6, 30)),
        ("1719705600000", date(2024, 6, 30)),  # epoch milliseconds
        ("not a date", None),
    ],
)
def test_deal_fields_and_close_date_formats(closedate, expected):
    props = {
        "dealname": "Renewal",
        "amount": "1500.50",
        "deal_currency_code": "EUR",
        "dealstage": "contractsent",
        "closedate": closedate,
    }
    record = to_record("deal", hubspot_object(props))

    assert isinstance(record, Deal)
    assert (record.name, record.currency, record.stage) == ("Renewal", "EUR", "contractsent")
    assert record.amount == Decimal("1500.50")
    assert record.close_date == expected


def test_company_id_comes_from_associations_primary_first():
    associations = {
        "companies": {
            "results": [
                {"id": "900", "type": "deal_to_company_unlabeled"},
                {"id": "901", "type": "deal_to_company"},  # primary
            ]
        }
    }
    deal = to_record("deal", hubspot_object({}, associations=associations))
    contact = to_record("contact", hubspot_object({}, associations=associations))

    assert isinstance(deal, Deal)
    assert deal.company_id == "901"
    assert isinstance(contact, Contact)
    assert contact.company_id == "901"
    bare = to_record("deal", hubspot_object({}))
    assert isinstance(bare, Deal)
    assert bare.company_id is None


def test_sdk_objects_convert_at_the_boundary():
    sdk_object = SimplePublicObjectWithAssociations(
        id="7",
        properties={"email": "x@example.com", "firstname": None},
        created_at=datetime(2024, 1, 1, tzinfo=UTC),
        updated_at=datetime(2024, 1, 2, tzinfo=UTC),
        archived=False,
        associations={
            "companies": CollectionResponseAssociatedId(
                results=[AssociatedId(id="42", type="contact_to_company")]
            )
        },
    )
    obj = from_sdk(HubSpotObject, sdk_object)
    record = to_record("contact", obj)

    assert isinstance(record, Contact)
    assert (record.id, record.email, record.first_name, record.company_id) == (
        "7",
        "x@example.com",
        None,
        "42",
    )
    assert record.properties == {"email": "x@example.com", "firstname": None}
    assert record.updated_at == datetime(2024, 1, 2, tzinfo=UTC)
    with pytest.raises(ValueError, match="without a HubSpotObject"):
        from_sdk(HubSpotObject, None)


def test_reads_ask_for_mapped_base_and_extra_properties():
    contact = read_properties("contact", ["favorite_color"])
    deal = read_properties("deal")

    assert {"email", "firstname", "associatedcompanyid", "lastmodifieddate"} <= set(contact)
    assert {"hs_object_id", "createdate", "favorite_color"} <= set(contact)
    assert {"dealname", "amount", "deal_currency_code", "closedate", "hs_lastmodifieddate"} <= set(
        deal
    )
    assert "lastmodifieddate" not in deal  # deals keep it in hs_lastmodifieddate
    assert len(contact) == len(set(contact))


# --- unified -> HubSpot ----------------------------------------------------------------


def test_input_fields_map_to_properties_and_custom_properties_pass_through():
    data = ContactIn(
        email="ada@example.com",
        first_name="Ada",
        job_title="Analyst",
        lifecycle_stage="lead",
        properties={"favorite_color": "teal", "loyalty_points": 3},
    )
    assert to_properties("contact", data, creating=True) == {
        "email": "ada@example.com",
        "firstname": "Ada",
        "jobtitle": "Analyst",
        "lifecyclestage": "lead",
        "favorite_color": "teal",
        "loyalty_points": 3,  # as given: pass-through is untouched
    }


def test_a_set_unified_field_wins_over_the_same_raw_property_and_unset_fields_do_not():
    data = ContactIn(
        email="typed@example.com", properties={"email": "raw@x.com", "lastname": "Raw"}
    )
    assert to_properties("contact", data, creating=False) == {
        "email": "typed@example.com",
        "lastname": "Raw",
    }


def test_explicit_none_clears_on_update_and_is_skipped_on_create():
    data = ContactIn(phone=None, first_name="Ada")
    assert to_properties("contact", data, creating=False) == {"phone": "", "firstname": "Ada"}
    assert to_properties("contact", data, creating=True) == {"firstname": "Ada"}


def test_deal_and_company_values_are_written_as_hubspot_strings():
    deal = DealIn(
        name="Renewal",
        amount=Decimal("1E+3"),
        currency="EUR",
        stage="closedwon",
        close_date=date(2024, 6, 30),
    )
    assert to_properties("deal", deal, creating=True) == {
        "dealname": "Renewal",
        "amount": "1000",
        "deal_currency_code": "EUR",
        "dealstage": "closedwon",
        "closedate": "2024-06-30",
    }
    company = CompanyIn(name="Acme", employees=250, industry="CONSTRUCTION")
    assert to_properties("company", company, creating=True) == {
        "name": "Acme",
        "numberofemployees": "250",
        "industry": "CONSTRUCTION",
    }


def test_company_id_is_an_association_not_a_property():
    contact = ContactIn(email="a@example.com", company_id="555")
    deal = DealIn(name="D", company_id="556")

    assert "associatedcompanyid" not in to_properties("contact", contact, creating=True)
    assert company_to_associate("contact", contact) == "555"
    assert company_to_associate("deal", deal) == "556"
    assert company_to_associate("company", CompanyIn(name="x")) is None
    assert company_to_associate("contact", ContactIn(email="b@example.com")) is None


def test_another_types_input_is_refused_and_a_plain_record_in_is_accepted():
    with pytest.raises(ValidationFailed, match="CompanyIn"):
        to_properties("company", ContactIn(email="a@example.com"), creating=True)
    plain = RecordIn(properties={"account_tier": "gold"})
    assert to_properties("company", plain, creating=True) == {"account_tier": "gold"}


# --- search --------------------------------------------------------------------------------


def search(query: SearchQuery, object_type="contact", cap=10_000):
    return search_request(object_type, query, properties=["email"], page_size=200, result_cap=cap)


def test_search_maps_fields_operators_sort_and_cursor():
    query = SearchQuery(
        filter_groups=[
            [
                SearchFilter(field="email", operator="contains", value="*@acme.test"),
                SearchFilter(field="lifecycle_stage", operator="in", value=["lead", "customer"]),
                SearchFilter(field="phone", operator="has_property"),
            ],
            [SearchFilter(field="favorite_color", operator="neq", value="red")],
        ],
        query="ada",
        sort=[SearchSort(field="created_at", direction="desc")],
        limit=25,
        cursor="50",
    )
    body = search(query)

    assert body["filterGroups"] == [
        {
            "filters": [
                {"propertyName": "email", "operator": "CONTAINS_TOKEN", "value": "*@acme.test"},
                {
                    "propertyName": "lifecyclestage",
                    "operator": "IN",
                    "values": ["lead", "customer"],
                },
                {"propertyName": "phone", "operator": "HAS_PROPERTY"},
            ]
        },
        {"filters": [{"propertyName": "favorite_color", "operator": "NEQ", "value": "red"}]},
    ]
    assert body["sorts"] == [{"propertyName": "createdate", "direction": "DESCENDING"}]
    assert (body["query"], body["limit"], body["after"]) == ("ada", 25, "50")
    sdk = to_sdk(body).to_dict(serialize=True)
    assert sdk["filterGroups"][0]["filters"][1]["values"] == ["lead", "customer"]
    assert sdk["sorts"] == body["sorts"]


@pytest.mark.parametrize(
    ("operator", "expected"),
    [("eq", "EQ"), ("lt", "LT"), ("lte", "LTE"), ("gt", "GT"), ("gte", "GTE")],
)
def test_comparison_operators_and_date_values(operator, expected):
    query = SearchQuery(
        filter_groups=[
            [SearchFilter(field="close_date", operator=operator, value=date(2024, 6, 30))]
        ]
    )
    (flt,) = search(query, "deal")["filterGroups"][0]["filters"]
    assert flt == {"propertyName": "closedate", "operator": expected, "value": "1719705600000"}


def test_unified_names_resolve_per_object_type():
    assert search_property("deal", "company_id") == "associations.company"
    assert search_property("contact", "company_id") == "associatedcompanyid"
    assert search_property("company", "updated_at") == "hs_lastmodifieddate"
    assert search_property("contact", "updated_at") == "lastmodifieddate"
    assert search_property("company", "employees") == "numberofemployees"
    assert search_property("company", "custom_thing") == "custom_thing"


def test_search_past_hubspots_cap_is_a_validation_failure_and_the_last_page_is_clamped():
    with pytest.raises(ValidationFailed, match="10,000") as raised:
        search(SearchQuery(cursor="10000"))
    assert raised.value.details["fields"]["cursor"]
    assert search(SearchQuery(cursor="9950", limit=200))["limit"] == 50


@pytest.mark.parametrize(
    ("flt", "where"),
    [
        (SearchFilter(field="email", operator="in", value="a@x.com"), "filter_groups[0][0]"),
        (SearchFilter(field="email", operator="eq"), "filter_groups[0][0]"),
    ],
)
def test_malformed_filters_are_refused_before_any_call(flt, where):
    with pytest.raises(ValidationFailed) as raised:
        search(SearchQuery(filter_groups=[[flt]]))
    assert where in raised.value.details["fields"]


def test_a_cursor_search_did_not_return_is_refused():
    with pytest.raises(ValidationFailed, match="cursor"):
        search(SearchQuery(cursor="abc"))


# --- HubSpot answers -> our errors -----------------------------------------------------------


def test_validation_error_names_the_property():
    body = {
        "status": "error",
        "message": "Property values were not valid: [...]",
        "category": "VALIDATION_ERROR",
        "correlationId": "c-1",
        "errors": [
            {
                "message": 'Property "nope" does not exist',
                "code": "PROPERTY_DOESNT_EXIST",
                "context": {"propertyName": ["nope"]},
            }
        ],
    }
    error = error_for_answer(HttpFailure(400, body, {}))
    assert error.code == ErrorCode.VALIDATION_FAILED
    assert error.details["fields"] == {"nope": 'Property "nope" does not exist'}
    assert error.details["correlation_id"] == "c-1"
    assert "nope" in error.message


def test_field_errors_fall_back_to_the_json_embedded_in_the_message():
    message = (
        'Property values were not valid: [{"isValid":false,"message":"x was not a valid integer.",'
        '"error":"INVALID_INTEGER","name":"loyalty_points"}]'
    )
    error = HubSpotError(message=message, category="VALIDATION_ERROR")
    assert field_errors(error) == {"loyalty_points": "x was not a valid integer."}


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "3"}, 3.0),
        ({"X-HubSpot-RateLimit-Interval-Milliseconds": "10000"}, 10.0),
        ({}, 10.0),
    ],
)
def test_rate_limited_carries_retry_after(headers, expected):
    body = {"status": "error", "policyName": "TEN_SECONDLY_ROLLING", "errorType": "RATE_LIMIT"}
    error = error_for_answer(HttpFailure(429, body, headers))
    assert error.code == ErrorCode.RATE_LIMITED
    assert error.retry_after == expected
    assert error.details["policy"] == "TEN_SECONDLY_ROLLING"
    assert error.retryable


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (404, None, ErrorCode.NOT_FOUND),
        (
            409,
            {"message": "Contact already exists. Existing ID: 9", "category": "CONFLICT"},
            ErrorCode.CONFLICT,
        ),
        (500, {"message": "Internal error"}, ErrorCode.PROVIDER_UNAVAILABLE),
        (503, "Service temporarily unavailable", ErrorCode.PROVIDER_UNAVAILABLE),
        (401, {"category": "EXPIRED_AUTHENTICATION"}, ErrorCode.REAUTH_REQUIRED),
        (400, {"message": "Bad thing", "category": "SOMETHING_ELSE"}, ErrorCode.PROVIDER_ERROR),
        (418, None, ErrorCode.PROVIDER_ERROR),
    ],
)
def test_statuses_map_to_codes(status, body, code):
    error = error_for_answer(HttpFailure(status, body, {}), subject="Contact 9")
    assert error.code == code
    if status == 404:
        assert error.message == "Contact 9 was not found in HubSpot."


def test_missing_scopes_is_a_provider_error_with_the_category_and_scopes():
    body = {
        "status": "error",
        "message": "This app hasn't been granted all required scopes to make this call.",
        "category": "MISSING_SCOPES",
        "errors": [
            {"message": "...", "context": {"requiredGranularScopes": ["crm.objects.deals.read"]}}
        ],
    }
    error = error_for_answer(HttpFailure(403, body, {}))
    assert error.code == ErrorCode.PROVIDER_ERROR
    assert error.details["category"] == "MISSING_SCOPES"
    assert error.details["required_scopes"] == ["crm.objects.deals.read"]
