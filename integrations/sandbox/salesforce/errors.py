"""Salesforce's answer shapes.

REST errors are a JSON array of ``{"message", "errorCode"[, "fields"]}`` (developer.salesforce.com,
REST API, Status Codes and Error Responses); sObject Collections report each record as
``{"id"?, "success", "errors": [{"statusCode", "message", "fields"}]}``; OAuth errors are
``{"error", "error_description"}``.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse, Response

from .schema import WriteError

NOT_FOUND = "The requested resource does not exist"
LIMIT_HEADER = "Sforce-Limit-Info"


def respond(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status)


def empty(status: int = 204) -> Response:
    return Response(status_code=status)


def error(status: int, code: str, message: str, fields: list[str] | None = None) -> JSONResponse:
    item: dict[str, Any] = {"message": message, "errorCode": code}
    if fields is not None:
        item["fields"] = fields
    return respond([item], status)


def write_error(problem: WriteError, status: int = 400) -> JSONResponse:
    return error(status, problem.code, problem.message, problem.fields)


def item_error(problem: WriteError) -> dict[str, Any]:
    """One ``errors`` entry of an sObject Collections result."""
    return {"statusCode": problem.code, "message": problem.message, "fields": problem.fields or []}


def not_found(message: str = NOT_FOUND) -> JSONResponse:
    return error(404, "NOT_FOUND", message)


def session_invalid() -> JSONResponse:
    return error(401, "INVALID_SESSION_ID", "Session expired or invalid")


def json_parser(detail: str) -> JSONResponse:
    return error(400, "JSON_PARSER_ERROR", detail)


def oauth_error(code: str, description: str, status: int = 400) -> JSONResponse:
    response = respond({"error": code, "error_description": description}, status)
    response.headers["Cache-Control"] = "no-store"
    return response
