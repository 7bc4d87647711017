"""Salesforce's JSON shapes as pydantic models: the boundary where parsed JSON becomes ours.

simple-salesforce hands back plain parsed JSON; every answer is validated here before the
client reads it, so nothing typed ``Any`` travels further than this module and the mapping.
Records stay dictionaries (their fields depend on the org) and are read by ``mapping.py``.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

W = TypeVar("W", bound="WireModel")


class WireModel(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


class ErrorItem(WireModel):
    """One entry of a REST error answer (``errorCode``) or of a SaveResult's ``errors``
    (``statusCode``); both carry ``message`` and the ``fields`` concerned."""

    message: str = ""
    error_code: str | None = Field(None, alias="errorCode")
    status_code: str | None = Field(None, alias="statusCode")
    fields: list[str] = Field(default_factory=list)

    @property
    def code(self) -> str:
        return self.error_code or self.status_code or ""


class SaveResult(WireModel):
    """One record's outcome in an sObject or sObject Collections write."""

    id: str | None = None
    success: bool = False
    errors: list[ErrorItem] = Field(default_factory=list)


class QueryAnswer(WireModel):
    total_size: int | None = Field(None, alias="totalSize")
    done: bool = True
    records: list[dict[str, Any]] = Field(default_factory=list)


class Identity(WireModel):
    """The identity URL's answer (``GET /id/{orgId}/{userId}``)."""

    organization_id: str
    user_id: str
    username: str | None = None
    display_name: str | None = None


class DescribeField(WireModel):
    name: str
    type: str


class Describe(WireModel):
    """``GET /sobjects/{type}/describe``: only the field list is read."""

    fields: list[DescribeField] = Field(default_factory=list)


def validate(model: type[W], data: Any) -> W:
    """``data`` as ``model``; raises ``ValueError`` (pydantic's ``ValidationError``)."""
    if data is None:
        raise ValueError(f"Salesforce answered without a {model.__name__} body.")
    return model.model_validate(data)
