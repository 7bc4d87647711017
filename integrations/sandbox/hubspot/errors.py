"""HubSpot's answer shapes: JSON bodies with a correlation id, and its error bodies.

CRM errors: ``{"status": "error", "message", "correlationId", "category"[, "errors",
"context", "links"]}`` (developers.hubspot.com, Error handling). OAuth token errors keep v1's
``status`` and ``message`` next to RFC 6749's ``error`` and ``error_description``, as HubSpot
answers them since its OAuth errors were standardised.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse, Response

from ..state import correlation_id
from .schema import PropertyError

CORRELATION_HEADER = "X-HubSpot-Correlation-Id"
SCOPES_LINK = "https://developers.hubspot.com/scopes"


def respond(body: Any, status: int = 200, *, correlation: str | None = None) -> JSONResponse:
    response = JSONResponse(body, status_code=status)
    response.headers[CORRELATION_HEADER] = correlation or correlation_id()
    return response


def empty(status: int = 204) -> Response:
    response = Response(status_code=status)
    response.headers[CORRELATION_HEADER] = correlation_id()
    return response


def error(
    status: int,
    message: str,
    category: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    context: dict[str, list[str]] | None = None,
    links: dict[str, str] | None = None,
    sub_category: str | None = None,
) -> JSONResponse:
    cid = correlation_id()
    body: dict[str, Any] = {
        "status": "error",
        "message": message,
        "correlationId": cid,
        "category": category,
    }
    if sub_category:
        body["subCategory"] = sub_category
    if errors is not None:
        body["errors"] = errors
    if context is not None:
        body["context"] = context
    if links is not None:
        body["links"] = links
    return respond(body, status, correlation=cid)


def validation(message: str, *, errors: list[dict[str, Any]] | None = None) -> JSONResponse:
    return error(400, message, "VALIDATION_ERROR", errors=errors)


def property_errors_message(problems: list[PropertyError], hub_id: int) -> str:
    detail = [
        {
            "isValid": False,
            "message": problem.message,
            "error": problem.code,
            "name": problem.name,
            "localizedErrorMessage": problem.message,
            "portalId": hub_id,
        }
        for problem in problems
    ]
    return "Property values were not valid: " + json.dumps(detail, separators=(",", ":"))


def property_error_items(problems: list[PropertyError]) -> list[dict[str, Any]]:
    return [
        {"message": p.message, "code": p.code, "context": {"propertyName": [p.name]}}
        for p in problems
    ]


def invalid_properties(problems: list[PropertyError], hub_id: int) -> JSONResponse:
    return validation(
        property_errors_message(problems, hub_id), errors=property_error_items(problems)
    )


def conflict(existing_id: str) -> JSONResponse:
    return error(409, f"Contact already exists. Existing ID: {existing_id}", "CONFLICT")


def object_not_found(object_id: str) -> JSONResponse:
    return error(
        404,
        "Object not found.  objectId are usually numeric.",
        "OBJECT_NOT_FOUND",
        context={"id": [object_id]},
    )


def unknown_object_type(name: str) -> JSONResponse:
    return validation(f"Unable to infer object type from: {name}")


def invalid_json(detail: str) -> JSONResponse:
    return validation(f"Invalid input JSON: {detail}")


def batch_item_error(
    category: str, message: str, context: dict[str, list[str]], *, sub_category: str | None = None
) -> dict[str, Any]:
    """One entry of a multi-status batch answer's ``errors`` (the SDK's StandardError)."""
    item: dict[str, Any] = {
        "status": "error",
        "category": category,
        "message": message,
        "context": context,
        "errors": [],
        "links": {},
    }
    if sub_category:
        item["subCategory"] = sub_category
    return item


def missing_scopes(required: list[str]) -> JSONResponse:
    return error(
        403,
        "This app hasn't been granted all required scopes to make this call. "
        f"Read more about required scopes here: {SCOPES_LINK}.",
        "MISSING_SCOPES",
        errors=[
            {
                "message": "One or more of the following scopes are required.",
                "context": {"requiredGranularScopes": required},
            }
        ],
        links={"scopes": SCOPES_LINK},
    )


def oauth_error(status_code: str, message: str, rfc_error: str, *, http: int = 400) -> JSONResponse:
    cid = correlation_id()
    body = {
        "status": status_code,
        "message": message,
        "correlationId": cid,
        "error": rfc_error,
        "error_description": message,
    }
    return respond(body, http, correlation=cid)
