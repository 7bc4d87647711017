"""HubSpot's JSON shapes as pydantic models: the boundary where SDK objects become ours.

The SDK (untyped) deserialises every answer into its generated models; ``from_sdk`` turns one
of those back into HubSpot's documented JSON (camelCase, via ``to_dict(serialize=True)``) and
validates it here, so nothing typed ``Any`` travels further than this module. Error bodies
from failed calls arrive as raw JSON and use the same models.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

W = TypeVar("W", bound="WireModel")


class WireModel(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


class AssociatedId(WireModel):
    id: str
    type: str | None = None


class AssociatedIds(WireModel):
    results: list[AssociatedId] = Field(default_factory=list)


class HubSpotObject(WireModel):
    """A CRM object as HubSpot returns it (``SimplePublicObject`` and friends)."""

    id: str
    properties: dict[str, str | None] = Field(default_factory=dict)
    created_at: datetime | None = Field(None, alias="createdAt")
    updated_at: datetime | None = Field(None, alias="updatedAt")
    archived: bool = False
    object_write_trace_id: str | None = Field(None, alias="objectWriteTraceId")
    associations: dict[str, AssociatedIds] = Field(default_factory=dict)


class NextPage(WireModel):
    after: str


class Paging(WireModel):
    next: NextPage | None = None


class ObjectPage(WireModel):
    results: list[HubSpotObject] = Field(default_factory=list)
    paging: Paging | None = None
    total: int | None = None

    @property
    def after(self) -> str | None:
        return self.paging.next.after if self.paging and self.paging.next else None


class ErrorDetail(WireModel):
    message: str = ""
    code: str | None = None
    context: dict[str, Any] = Field(default_factory=dict)

    @field_validator("context", mode="before")
    @classmethod
    def _context_dict(cls, value: Any) -> Any:
        # HubSpot documents ``context`` as an object but some endpoints send a string.
        return value if isinstance(value, dict) else {}


class HubSpotError(WireModel):
    """HubSpot's error body (and one entry of a batch answer's ``errors``)."""

    status: str | None = None
    category: str | None = None
    message: str = ""
    id: str | None = None
    context: dict[str, Any] = Field(default_factory=dict)
    errors: list[ErrorDetail] = Field(default_factory=list)
    correlation_id: str | None = Field(None, alias="correlationId")
    policy_name: str | None = Field(None, alias="policyName")
    error: str | None = None  # OAuth endpoints answer RFC 6749 style too

    @field_validator("context", mode="before")
    @classmethod
    def _context_dict(cls, value: Any) -> Any:
        return value if isinstance(value, dict) else {}

    def context_values(self, key: str) -> list[str]:
        """``context[key]`` as strings, whether HubSpot sent a list or a single value."""
        value = self.context.get(key)
        if value is None:
            return []
        items = value if isinstance(value, list) else [value]
        return [str(item) for item in items]


class BatchAnswer(WireModel):
    results: list[HubSpotObject] = Field(default_factory=list)
    errors: list[HubSpotError] = Field(default_factory=list)


class BatchErrors(WireModel):
    """The ``errors`` of a batch answer whose results we do not read (v4 associations)."""

    errors: list[HubSpotError] = Field(default_factory=list)


class AssociationTarget(WireModel):
    to_object_id: str = Field(alias="toObjectId")


class AssociationPage(WireModel):
    results: list[AssociationTarget] = Field(default_factory=list)
    paging: Paging | None = None

    @property
    def after(self) -> str | None:
        return self.paging.next.after if self.paging and self.paging.next else None


class AccessTokenInfo(WireModel):
    """``GET /oauth/v1/access-tokens/{token}``."""

    hub_id: int
    hub_domain: str | None = None
    user: str | None = None
    user_id: int | None = None
    app_id: int | None = None
    scopes: list[str] = Field(default_factory=list)


def _without_nulls(value: Any) -> Any:
    # The SDK fills every absent attribute with None; HubSpot simply leaves them out, and our
    # models' defaults expect the latter. Property values keep their None (a cleared value).
    if isinstance(value, dict):
        return {
            k: v if k == "properties" else _without_nulls(v)
            for k, v in value.items()
            if v is not None
        }
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def from_sdk(model: type[W], sdk_object: Any) -> W:
    """Validate an SDK model (or a plain dict) as ``model``; raises ``ValueError`` if unusable."""
    if sdk_object is None:
        raise ValueError(f"HubSpot answered without a {model.__name__} body.")
    raw = sdk_object.to_dict(serialize=True) if hasattr(sdk_object, "to_dict") else sdk_object
    return model.model_validate(_without_nulls(raw))
