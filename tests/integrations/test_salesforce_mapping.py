"""Salesforce mapping, SOQL building and error translation: pure functions, no network."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from core.errors import (
    ErrorCode,
    NotFound,
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderUnavailable,
    ValidationFailed,
)
from integrations.providers.base import ProviderConfig
from integrations.providers.batching import Collected
from integrations.providers.salesforce import batch, catalog, errors, soql
from integrations.providers.salesforce.mapping import (
    default_fields,
    salesforce_field,
    to_fields,
    to_record,
    website_domain,
)
from integrations.providers.salesforce.provider import SalesforceProvider, org_id_of
from integrations.providers.salesforce.transport import usage
from integrations.providers.salesforce.wire import Describe, ErrorItem, SaveResult
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

CONTACT_ID = "003Dn0000000001AAA"
ACCOUNT_ID = "001Dn0000000001AAA"
CONTACT_FIELDS: soql.Catalog = {
    name.lower(): (name, kind)
    for name, kind in {
        "Id": "id",
        "FirstName": "string",
        "LastName": "string",
        "Email": "email",
        "AccountId": "reference",
        "Birthdate": "date",
        "CreatedDate": "datetime",
        "IsDeleted": "boolean",
        "Favorite_Color__c": "string",
        "Score__c": "double",
    }.items()
}


# --- records -------------------------------------------------------------------------------------


def test_contact_row_becomes_a_unified_contact_with_raw_properties():
    row = {
        "attributes": {
            "type": "Contact",
            "url": f"/services/data/v62.0/sobjects/Contact/{CONTACT_ID}",
        },
        "Id": CONTACT_ID,
        "FirstName": "Ada",
        "LastName": "Lovelace",
        "Email": "ada@engines.test",
        "Phone": "",
        "Title": "Analyst",
        "AccountId": ACCOUNT_ID,
        "IsDeleted": False,
        "CreatedDate": "2024-05-01T12:34:56.789+0000",
        "LastModifiedDate": "2024-05-02T08:00:00.000+0000",
        "Favorite_Color__c": "teal",
    }
    record = to_record("contact", row)
    assert isinstance(record, Contact)
    assert (record.first_name, record.last_name, record.email) == (
        "Ada",
        "Lovelace",
        "ada@engines.test",
    )
    assert record.phone is None  # empty strings are no value
    assert record.job_title == "Analyst"
    assert record.company_id == ACCOUNT_ID
    assert record.lifecycle_stage is None  # no standard field on Contact
    assert record.created_at == datetime(2024, 5, 1, 12, 34, 56, 789000, tzinfo=UTC)
    assert record.updated_at == datetime(2024, 5, 2, 8, tzinfo=UTC)
    assert record.archived is False
    assert "attributes" not in record.properties
    assert record.properties["Favorite_Color__c"] == "teal"
    assert record.properties == {k: v for k, v in row.items() if k != "attributes"}


def test_account_and_opportunity_rows():
    company = to_record(
        "company",
        {
            "Id": ACCOUNT_ID,
            "Name": "Acme",
            "Website": "https://www.acme.test/about",
            "Industry": "Technology",
            "NumberOfEmployees": 250,
            "IsDeleted": True,
        },
    )
    assert isinstance(company, Company)
    assert (company.name, company.domain, company.industry) == (
        "Acme",
        "www.acme.test",
        "Technology",
    )
    assert company.employees == 250
    assert company.archived is True

    deal = to_record(
        "deal",
        {
            "Id": "006Dn0000000001AAA",
            "Name": "Renewal",
            "Amount": 1500.5,
            "StageName": "Prospecting",
            "CloseDate": "2024-06-30",
            "AccountId": ACCOUNT_ID,
        },
    )
    assert isinstance(deal, Deal)
    assert deal.amount == Decimal("1500.50")
    assert deal.currency is None  # no CurrencyIsoCode: a single-currency org
    assert (deal.stage, deal.close_date, deal.company_id) == (
        "Prospecting",
        date(2024, 6, 30),
        ACCOUNT_ID,
    )
    assert to_record("deal", {"Id": "x", "CurrencyIsoCode": "EUR"}).currency == "EUR"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("website", "domain"),
    [
        ("acme.test", "acme.test"),
        ("http://acme.test", "acme.test"),
        ("https://acme.test/", "acme.test"),
        ("HTTPS://Acme.test/path?q=1", "Acme.test"),
        ("", None),
        (None, None),
    ],
)
def test_website_is_read_as_a_domain(website: Any, domain: str | None):
    assert website_domain(website) == domain


def test_unparseable_values_leave_unified_fields_empty_but_keep_the_raw_ones():
    deal = to_record("deal", {"Id": "x", "Amount": "lots", "CloseDate": "soon", "CreatedDate": "?"})
    assert isinstance(deal, Deal)
    assert (deal.amount, deal.close_date, deal.created_at) == (None, None, None)
    assert deal.properties["Amount"] == "lots"
    company = to_record("company", {"Id": "x", "NumberOfEmployees": 2.5})
    assert company.employees is None  # type: ignore[union-attr]


def test_writes_merge_unified_fields_over_raw_properties():
    data = ContactIn(
        first_name="Typed",
        email="a@b.test",
        lifecycle_stage="lead",
        company_id=ACCOUNT_ID,
        properties={"FirstName": "Raw", "Favorite_Color__c": "teal"},
    )
    fields = to_fields("contact", data, creating=True)
    assert fields == {
        "FirstName": "Typed",
        "Email": "a@b.test",
        "AccountId": ACCOUNT_ID,
        "Favorite_Color__c": "teal",
    }  # lifecycle_stage goes nowhere
    assert to_fields("contact", ContactIn(phone=None), creating=True) == {}
    assert to_fields("contact", ContactIn(phone=None, company_id=None), creating=False) == {
        "Phone": None,
        "AccountId": None,
    }


def test_write_values_are_json_for_salesforce():
    fields = to_fields(
        "deal",
        DealIn(name="D", amount=Decimal("1500.50"), close_date=date(2024, 6, 30), currency="EUR"),
        creating=True,
    )
    assert fields == {
        "Name": "D",
        "Amount": 1500.5,
        "CloseDate": "2024-06-30",
        "CurrencyIsoCode": "EUR",
    }
    assert to_fields("deal", DealIn(amount=Decimal("2000")), creating=False) == {"Amount": 2000}
    assert to_fields("company", CompanyIn(domain="acme.test", employees=3), creating=True) == {
        "Website": "acme.test",
        "NumberOfEmployees": 3,
    }
    raw = RecordIn(properties={"attributes": {"type": "Contact"}, "Score__c": Decimal("1.5")})
    assert to_fields("contact", raw, creating=False) == {"Score__c": 1.5}


def test_an_input_of_another_type_is_refused():
    with pytest.raises(ValidationFailed, match="ContactIn"):
        to_fields("contact", CompanyIn(name="x"), creating=True)


def test_unified_names_map_to_salesforce_fields():
    assert salesforce_field("contact", "email") == "Email"
    assert salesforce_field("deal", "company_id") == "AccountId"
    assert salesforce_field("company", "updated_at") == "LastModifiedDate"
    assert salesforce_field("contact", "Favorite_Color__c") == "Favorite_Color__c"
    with pytest.raises(ValidationFailed) as caught:
        salesforce_field("contact", "lifecycle_stage")
    assert caught.value.details["fields"] == {"lifecycle_stage": "no Salesforce field"}
    assert default_fields("deal")[0] == "Id"
    assert "CurrencyIsoCode" not in default_fields("deal")


# --- SOQL literals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ("plain", "'plain'"),
        ("O'Brien", r"'O\'Brien'"),
        ("back\\slash", r"'back\\slash'"),
        ('say "hi"', r"""'say \"hi\"'"""),
        ("two\nlines\ttab", r"'two\nlines\ttab'"),
        ("' OR Name != '", r"'\' OR Name != \''"),
        ("\\' OR 1=1 --", r"'\\\' OR 1=1 --'"),
    ],
)
def test_strings_are_quoted_with_every_quote_and_backslash_escaped(text: str, quoted: str):
    assert soql.quote(text) == quoted


def test_like_patterns_escape_wildcards_and_control_characters_are_refused():
    assert soql.quote("50%_off", like=True) == r"'50\%\_off'"
    assert soql.quote("50%_off") == "'50%_off'"
    with pytest.raises(ValueError, match="control"):
        soql.quote("bell\x07")


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        (None, "string", "null"),
        ("x", "string", "'x'"),
        (42, "string", "'42'"),
        (True, "string", "'true'"),
        ("2024-06-30", "date", "2024-06-30"),
        (date(2024, 6, 30), "date", "2024-06-30"),
        (datetime(2024, 6, 30, 12, 0, 1, 500000, tzinfo=UTC), "date", "2024-06-30"),
        ("2024-06-30T10:00:00+02:00", "datetime", "2024-06-30T08:00:00Z"),
        ("2024-05-01T12:34:56.789+0000", "datetime", "2024-05-01T12:34:56.789Z"),
        (date(2024, 6, 30), "datetime", "2024-06-30T00:00:00Z"),
        (datetime(2024, 6, 30, 8), "datetime", "2024-06-30T08:00:00Z"),
        ("1500.50", "currency", "1500.50"),
        (7, "int", "7"),
        (Decimal("-2.5"), "double", "-2.5"),
        ("TRUE", "boolean", "true"),
        (False, "boolean", "false"),
        (5, None, "5"),
        (date(2024, 1, 2), None, "2024-01-02"),
        ("2024-01-02", None, "'2024-01-02'"),
        (True, None, "true"),
    ],
)
def test_literals_are_typed_by_the_field(value: Any, kind: str | None, expected: str):
    assert soql.literal(value, kind) == expected


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("1 OR Name != null", "double"),
        ("2024-06-30 OR IsDeleted = true", "date"),
        ("yesterday", "datetime"),
        ("yes", "boolean"),
        ("NaN", "currency"),
        (True, "int"),
        (["a"], "string"),
        ({"a": 1}, None),
    ],
)
def test_values_that_do_not_fit_the_field_are_refused_not_inlined(value: Any, kind: str | None):
    with pytest.raises(ValueError, match=r"not a|collection|boolean|finite"):
        soql.literal(value, kind)


# --- filters, sorts and statements ----------------------------------------------------------------


def test_filter_groups_become_a_where_clause():
    query = SearchQuery(
        filter_groups=[
            [
                SearchFilter(field="last_name", operator="eq", value="Lovelace"),
                SearchFilter(field="email", operator="contains", value="@engines"),
            ],
            [
                SearchFilter(field="Score__c", operator="gte", value="10"),
                SearchFilter(field="Birthdate", operator="lt", value="2000-01-01"),
                SearchFilter(
                    field="company_id", operator="in", value=[ACCOUNT_ID, "001Dn0000000002AAA"]
                ),
            ],
            [SearchFilter(field="first_name", operator="not_has_property")],
        ],
        query="ada",
    )
    where = soql.where_clause("contact", query, CONTACT_FIELDS)
    assert where == (
        "(FirstName LIKE '%ada%' OR LastName LIKE '%ada%' OR Email LIKE '%ada%') AND "
        "((LastName = 'Lovelace' AND Email LIKE '%@engines%') OR "
        f"(Score__c >= 10 AND Birthdate < 2000-01-01 AND AccountId IN ('{ACCOUNT_ID}', "
        "'001Dn0000000002AAA')) OR (FirstName = null))"
    )


def test_an_injection_attempt_stays_a_literal():
    evil = "x' OR LastName != '"
    query = SearchQuery(
        filter_groups=[[SearchFilter(field="last_name", value=evil)]], query="%' OR '\\"
    )
    where = soql.where_clause("contact", query, CONTACT_FIELDS)
    assert r"LastName = 'x\' OR LastName != \''" in where
    # With every string literal (quotes, escapes and all) taken out, only our structure is left.
    skeleton = re.sub(r"'(?:[^'\\]|\\.)*'", "S", where)
    assert skeleton == (
        "(FirstName LIKE S OR LastName LIKE S OR Email LIKE S) AND ((LastName = S))"
    )
    assert r"LIKE '%\%\' OR \'\\%'" in where


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("LastName) OR (Id != null", "not a field name"),
        ("Account.Name", "not a field name"),
        ("Last Name", "not a field name"),
        ("No_Such__c", "no such field"),
    ],
)
def test_field_names_are_checked(field: str, message: str):
    query = SearchQuery(filter_groups=[[SearchFilter(field=field, value="x")]])
    with pytest.raises(ValidationFailed) as caught:
        soql.where_clause("contact", query, CONTACT_FIELDS)
    assert message in str(caught.value.details["fields"])


def test_field_names_take_the_orgs_spelling():
    found = soql.resolve_field("contact", "favorite_color__C", CONTACT_FIELDS, where="x")
    assert found == soql.Field("Favorite_Color__c", "string")
    assert soql.resolve_field("contact", "Custom__c", None, where="x") == soql.Field(
        "Custom__c", None
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (SearchFilter(field="email", operator="in", value=[]), "non-empty list"),
        (SearchFilter(field="email", operator="in", value="a"), "non-empty list"),
        (SearchFilter(field="email", operator="contains", value=None), "one text value"),
        (
            SearchFilter(field="Birthdate", operator="gt", value="1 OR IsDeleted = true"),
            "not a date",
        ),
    ],
)
def test_bad_filter_values_name_the_filter(spec: SearchFilter, message: str):
    with pytest.raises(ValidationFailed) as caught:
        soql.where_clause("contact", SearchQuery(filter_groups=[[spec]]), CONTACT_FIELDS)
    assert list(caught.value.details["fields"]) == ["filter_groups[0][0]"]
    assert message in caught.value.message


def test_more_than_six_filters_in_a_group_is_refused():
    group = [SearchFilter(field="email", value=str(i)) for i in range(7)]
    with pytest.raises(ValidationFailed, match="at most 6"):
        soql.where_clause("contact", SearchQuery(filter_groups=[group]), CONTACT_FIELDS)


def test_search_statement_orders_by_the_sort_then_id_and_asks_for_one_more_row():
    query = SearchQuery(sort=[SearchSort(field="last_name", direction="desc")], limit=3)
    text, sort, _ = soql.search_statement(
        "contact", query, fields=["Id", "LastName"], catalog=CONTACT_FIELDS, page_size=200
    )
    assert (
        text == "SELECT Id, LastName FROM Contact ORDER BY LastName DESC NULLS LAST, Id ASC LIMIT 4"
    )
    assert sort == soql.Sort(soql.Field("LastName", "string"), descending=True)
    plain, no_sort, _ = soql.search_statement(
        "company", SearchQuery(limit=200), fields=["Id"], catalog=None, page_size=150
    )
    assert plain == "SELECT Id FROM Account ORDER BY Id ASC LIMIT 151"
    assert no_sort is None


def test_keyset_conditions_follow_the_order_including_nulls():
    name = soql.Field("LastName", "string")
    asc, desc = soql.Sort(name, False), soql.Sort(name, True)
    assert asc.after("Lee", CONTACT_ID) == (
        f"(LastName > 'Lee' OR (LastName = 'Lee' AND Id > '{CONTACT_ID}'))"
    )
    assert asc.after(None, CONTACT_ID) == (
        f"((LastName = null AND Id > '{CONTACT_ID}') OR LastName != null)"
    )
    assert desc.after("Lee", CONTACT_ID) == (
        f"(LastName < 'Lee' OR (LastName = 'Lee' AND Id > '{CONTACT_ID}') OR LastName = null)"
    )
    assert desc.after(None, CONTACT_ID) == f"(LastName = null AND Id > '{CONTACT_ID}')"
    created = soql.Sort(soql.Field("CreatedDate", "datetime"), False)
    assert created.after("2024-05-01T12:00:00.000+0000", CONTACT_ID).startswith(
        "(CreatedDate > 2024-05-01T12:00:00Z OR"
    )


def test_sorting_on_id_pages_on_id_alone():
    query = SearchQuery(sort=[SearchSort(field="id", direction="desc")], limit=1)
    _, sort, print_ = soql.search_statement(
        "deal", query, fields=["Id"], catalog=None, page_size=200
    )
    assert sort is not None
    assert sort.order_by() == "Id DESC"
    cursor = soql.encode_cursor("006Dn0000000005AAA", "006Dn0000000005AAA", print_)
    text, _, _ = soql.search_statement(
        "deal",
        query.model_copy(update={"cursor": cursor}),
        fields=["Id"],
        catalog=None,
        page_size=200,
    )
    assert text == (
        "SELECT Id FROM Opportunity WHERE Id < '006Dn0000000005AAA' ORDER BY Id DESC LIMIT 2"
    )


def test_cursors_round_trip_and_belong_to_their_search():
    query = SearchQuery(sort=[SearchSort(field="last_name")], limit=2)
    _, sort, print_ = soql.search_statement(
        "contact", query, fields=["Id"], catalog=CONTACT_FIELDS, page_size=200
    )
    rows = [
        {"Id": "003Dn0000000001AAA", "LastName": "Ann"},
        {"Id": "003Dn0000000002AAA", "LastName": "Bob"},
        {"Id": "003Dn0000000003AAA", "LastName": "Cid"},
    ]
    page, cursor = soql.next_cursor(rows, 2, sort, print_, done=True)
    assert [r["LastName"] for r in page] == ["Ann", "Bob"]
    assert cursor is not None
    assert soql.decode_cursor(cursor, print_) == soql.Cursor("Bob", "003Dn0000000002AAA")
    following = query.model_copy(update={"cursor": cursor})
    text, _, _ = soql.search_statement(
        "contact", following, fields=["Id"], catalog=CONTACT_FIELDS, page_size=200
    )
    assert "WHERE (LastName > 'Bob' OR (LastName = 'Bob' AND Id > '003Dn0000000002AAA'))" in text

    other = SearchQuery(sort=[SearchSort(field="first_name")], cursor=cursor)
    with pytest.raises(ValidationFailed, match="cursor"):
        soql.search_statement(
            "contact", other, fields=["Id"], catalog=CONTACT_FIELDS, page_size=200
        )
    for forged in ("not-base64!", soql.encode_cursor("x", "003' OR Id != '", print_), "e30"):
        with pytest.raises(ValidationFailed, match="cursor"):
            soql.decode_cursor(forged, print_)


def test_a_page_is_last_only_when_nothing_more_came_back():
    rows = [{"Id": f"003Dn000000000{i}AAA"} for i in range(1, 4)]
    assert soql.next_cursor(rows[:2], 2, None, "p", done=True)[1] is None
    assert soql.next_cursor(rows[:2], 2, None, "p", done=False)[1] is not None  # cut short
    assert soql.next_cursor([], 2, None, "p", done=False) == ([], None)


def test_statements_refuse_names_that_are_not_identifiers():
    assert soql.statement("Contact", ["Id"], where=["", "IsDeleted = true"], limit=5) == (
        "SELECT Id FROM Contact WHERE IsDeleted = true ORDER BY Id ASC LIMIT 5"
    )
    with pytest.raises(ValueError, match="field"):
        soql.statement("Contact", ["Id, (SELECT Id FROM Cases)"], limit=1)
    with pytest.raises(ValueError, match="sObject"):
        soql.statement("Contact WHERE Id != null", ["Id"], limit=1)


# --- describe -------------------------------------------------------------------------------------


def test_describe_gives_the_select_list_and_the_catalog():
    described = Describe.model_validate(
        {
            "fields": [
                {"name": "Id", "type": "id"},
                {"name": "MailingAddress", "type": "address"},
                {"name": "MailingCity", "type": "string"},
                {"name": "Favorite_Color__c", "type": "string"},
            ]
        }
    )
    fields = catalog.object_fields(described)
    assert fields.select == ["Id", "MailingCity", "Favorite_Color__c"]
    assert fields.catalog["mailingaddress"] == ("MailingAddress", "address")
    assert fields.max_rows is None
    many = Describe.model_validate(
        {"fields": [{"name": f"Field_{n:04d}__c", "type": "string"} for n in range(500)]}
    )
    wide = catalog.object_fields(many)
    assert wide.select == ["FIELDS(ALL)"]  # too long for a URL
    assert wide.max_rows == 200


# --- errors ---------------------------------------------------------------------------------------


def items(*entries: dict[str, Any]) -> list[ErrorItem]:
    return errors.error_items(list(entries))


def test_validation_errors_name_their_fields():
    named = errors.error_for_items(
        400,
        items(
            {
                "errorCode": "REQUIRED_FIELD_MISSING",
                "message": "Required fields are missing: [LastName]",
                "fields": ["LastName"],
            }
        ),
    )
    assert isinstance(named, ValidationFailed)
    assert named.details["fields"] == {"LastName": "Required fields are missing: [LastName]"}
    assert named.details["error_code"] == "REQUIRED_FIELD_MISSING"

    column = errors.error_for_items(
        400,
        items(
            {
                "errorCode": "INVALID_FIELD",
                "message": "No such column 'Shoe__c' on sobject of type Contact",
            }
        ),
    )
    assert list(column.details["fields"]) == ["Shoe__c"]

    sent = {"LastName": "L", "Amount": "lots", "Name": "x"}
    parser = errors.error_for_items(
        400,
        items(
            {
                "errorCode": "JSON_PARSER_ERROR",
                "message": "Cannot deserialize instance of currency from VALUE_STRING value lots or request may be missing a required field at [line:1, column:28]",
            }
        ),
        sent=sent,
    )
    assert list(parser.details["fields"]) == ["Amount"]
    query = errors.error_for_items(
        400, items({"errorCode": "MALFORMED_QUERY", "message": "unexpected token: OR"})
    )
    assert list(query.details["fields"]) == ["query"]


@pytest.mark.parametrize(
    ("status", "entry", "kind", "code"),
    [
        (
            403,
            {"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "TotalRequests Limit exceeded."},
            ProviderRateLimited,
            ErrorCode.RATE_LIMITED,
        ),
        (
            404,
            {"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"},
            NotFound,
            ErrorCode.NOT_FOUND,
        ),
        (
            404,
            {"errorCode": "ENTITY_IS_DELETED", "message": "entity is deleted"},
            NotFound,
            ErrorCode.NOT_FOUND,
        ),
        (
            401,
            {"errorCode": "INVALID_SESSION_ID", "message": "Session expired or invalid"},
            ProviderAuthError,
            ErrorCode.REAUTH_REQUIRED,
        ),
        (
            503,
            {"errorCode": "SERVER_UNAVAILABLE", "message": "try again"},
            ProviderUnavailable,
            ErrorCode.PROVIDER_UNAVAILABLE,
        ),
        (400, {"errorCode": "DUPLICATE_VALUE", "message": "duplicate"}, None, ErrorCode.CONFLICT),
        (
            403,
            {"errorCode": "INSUFFICIENT_ACCESS", "message": "no"},
            ProviderError,
            ErrorCode.PROVIDER_ERROR,
        ),
    ],
)
def test_answers_map_to_our_codes(status: int, entry: dict[str, Any], kind: Any, code: ErrorCode):
    error = errors.error_for_items(status, items(entry))
    if kind is not None:
        assert isinstance(error, kind)
    assert error.code == code


def test_limit_errors_carry_a_wait():
    daily = errors.error_for_items(
        403,
        items({"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "TotalRequests Limit exceeded."}),
    )
    concurrent = errors.error_for_items(
        403,
        items(
            {
                "errorCode": "REQUEST_LIMIT_EXCEEDED",
                "message": "ConcurrentPerOrgLongTxn Limit exceeded.",
            }
        ),
    )
    assert daily.retry_after == 900
    assert concurrent.retry_after == 30
    assert daily.retryable
    assert concurrent.retryable


def test_oauth_shaped_and_text_bodies_are_read_too():
    oauth = errors.error_items({"error": "invalid_token", "error_description": "bad"})
    assert [(i.code, i.message) for i in oauth] == [("invalid_token", "bad")]
    assert [i.message for i in errors.error_items("Bad_OAuth_Token")] == ["Bad_OAuth_Token"]
    assert errors.error_items(None) == []


def test_limit_info_header_is_parsed():
    assert usage({"Sforce-Limit-Info": "api-usage=18/5000"}) == (18, 5000)
    assert usage(
        {"sforce-limit-info": "api-usage=25/5000; per-app-api-usage=17/250(appName=x)"}
    ) == (25, 5000)
    assert usage({}) == (None, None)


# --- batches --------------------------------------------------------------------------------------


def test_collection_bodies_type_every_record():
    chunk = [batch.Prepared(0, {"LastName": "A"}), batch.Prepared(3, {"LastName": "B"}, CONTACT_ID)]
    assert batch.collection_body("contact", chunk) == {
        "allOrNone": False,
        "records": [
            {"attributes": {"type": "Contact"}, "LastName": "A"},
            {"attributes": {"type": "Contact"}, "LastName": "B", "id": CONTACT_ID},
        ],
    }


def test_save_results_go_back_to_their_inputs_indexes():
    chunk = [batch.Prepared(i, {"LastName": f"L{i}"}, f"003Dn000000000{i}AAA") for i in (2, 5, 7)]
    results = [
        SaveResult.model_validate({"id": "003Dn0000000002AAA", "success": True, "errors": []}),
        SaveResult.model_validate(
            {
                "success": False,
                "errors": [
                    {
                        "statusCode": "INVALID_CROSS_REFERENCE_KEY",
                        "message": "invalid cross reference id",
                        "fields": [],
                    }
                ],
            }
        ),
        SaveResult.model_validate(
            {
                "success": False,
                "errors": [
                    {"statusCode": "STRING_TOO_LONG", "message": "too long", "fields": ["LastName"]}
                ],
            }
        ),
    ]
    collected = Collected()
    written = batch.correlate(chunk, results, collected, updating=True)
    assert list(written) == ["003Dn0000000002AAA"]
    assert {i: e.code for i, e in collected.errors.items()} == {
        5: "not_found",
        7: "validation_failed",
    }
    assert collected.errors[7].details["fields"] == {"LastName": "too long"}


# --- the provider ---------------------------------------------------------------------------------


def provider() -> SalesforceProvider:
    return SalesforceProvider(
        ProviderConfig(
            client_id="id",
            client_secret="secret",
            redirect_uri="https://switchboard.test/connect/salesforce/callback",
            app_url="https://login.salesforce.com",
            api_url="",
            extra={
                "sandbox_login_url": "https://test.salesforce.com",
                "my_domain_url": "https://{domain}",
                "api_version": "62.0",
                "ca_file": "",
            },
        )
    )


@pytest.mark.parametrize(
    ("environment", "domain", "url"),
    [
        (None, None, "https://login.salesforce.com"),
        ("production", None, "https://login.salesforce.com"),
        ("sandbox", None, "https://test.salesforce.com"),
        ("my_domain", "acme.my.salesforce.com", "https://acme.my.salesforce.com"),
        (
            "my_domain",
            "acme--dev.sandbox.my.salesforce.com",
            "https://acme--dev.sandbox.my.salesforce.com",
        ),
        (
            "my_domain",
            "acme-dev-ed.develop.my.salesforce.com",
            "https://acme-dev-ed.develop.my.salesforce.com",
        ),
    ],
)
def test_login_hosts(environment: str | None, domain: str | None, url: str):
    sf = provider()
    assert sf.login_url(environment, domain) == url
    assert sf.token_url(url) == f"{url}/services/oauth2/token"
    assert sf.authorize_url(url) == f"{url}/services/oauth2/authorize"


@pytest.mark.parametrize(
    "domain",
    [
        None,
        "",
        "evil.example.com",
        "my.salesforce.com",
        "ACME.my.salesforce.com",
        "https://acme.my.salesforce.com",
        "acme.my.salesforce.com/path",
        "acme.my.salesforce.com.evil.test",
        "acme.my.salesforce.com@evil.test",
        "-acme.my.salesforce.com",
        "acme..my.salesforce.com",
        "acme.my.salesforce.com\n",
    ],
)
def test_bad_my_domains_are_refused_naming_the_field(domain: str | None):
    with pytest.raises(ValidationFailed) as caught:
        provider().login_url("my_domain", domain)
    assert list(caught.value.details["fields"]) == ["domain"]


def test_unknown_environment_is_refused():
    with pytest.raises(ValidationFailed) as caught:
        provider().login_url("moon")
    assert list(caught.value.details["fields"]) == ["environment"]


def test_descriptor():
    sf = provider()
    assert [(o.environment, o.label, o.needs_domain) for o in sf.login_options()] == [
        ("production", "Production (login.salesforce.com)", False),
        ("sandbox", "Sandbox (test.salesforce.com)", False),
        ("my_domain", "My Domain (yourcompany.my.salesforce.com)", True),
    ]
    assert sf.scopes == ("api", "refresh_token", "id")
    assert sf.token_on_login_host
    assert sf.use_pkce
    assert sf.token_auth_method == "client_secret_post"
    assert sf.rate_limit.daily_limit == 15_000
    assert sf.rate_limit.batch_size == 200
    assert sf.rate_limit.windows == []
    assert "five" in sf.connect_note
    assert "sixth" in sf.connect_note
    assert sf.refresh_refused(
        400, {"error": "invalid_grant", "error_description": "expired access/refresh token"}
    )
    assert not sf.refresh_refused(400, {"error": "invalid_client"})


def test_token_answer_keeps_the_instance_and_identity_but_no_signature():
    body = {
        "access_token": "00Dxx!AQ0AQ",
        "refresh_token": "5Aep861",
        "signature": "c2lnbmF0dXJl",
        "scope": "refresh_token api id",
        "instance_url": "https://acme.my.salesforce.com/",
        "id": "https://login.salesforce.com/id/00DDn00000000001AB/005Dn00000000001AB",
        "token_type": "Bearer",
        "issued_at": 1716800000000,
    }
    tokens = provider().parse_token_response(body, now=datetime.now(UTC))
    assert tokens.expires_at is None
    assert tokens.refresh_token == "5Aep861"
    assert tokens.scopes == ["refresh_token", "api", "id"]
    assert tokens.extra == {
        "instance_url": "https://acme.my.salesforce.com",
        "id_url": body["id"],
        "issued_at": "1716800000000",
    }
    assert org_id_of(body["id"]) == "00DDn00000000001AB"
    assert org_id_of("https://evil.test/") is None
    for bad in ("http://acme.my.salesforce.com", "acme.my.salesforce.com", None):
        with pytest.raises(ProviderError):
            provider().parse_token_response(body | {"instance_url": bad}, now=datetime.now(UTC))
