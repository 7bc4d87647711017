"""API shapes for accounts. Outputs are plain Pydantic models (cheap to validate)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from .connect_sessions import EndUser
from .models import ApiKey

ProviderKey = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{1,31}$")]


class StrictIn(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OrganizationOut(BaseModel):
    id: uuid.UUID
    slug: str
    name: str


class UserOut(BaseModel):
    id: int
    email: str


class ApiKeyRef(BaseModel):
    id: uuid.UUID
    prefix: str


class MeOut(BaseModel):
    organization: OrganizationOut
    role: str
    auth_method: Literal["api_key", "session"]
    user: UserOut | None
    api_key: ApiKeyRef | None


class ApiKeyOut(BaseModel):
    id: uuid.UUID
    name: str
    prefix: str
    active: bool
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    created_by: str | None = Field(description="Email of the person who created it, if any.")

    @classmethod
    def of(cls, api_key: ApiKey) -> ApiKeyOut:
        return cls(
            id=api_key.pk,
            name=api_key.name,
            prefix=api_key.prefix,
            active=api_key.revoked_at is None,
            created_at=api_key.created_at,
            last_used_at=api_key.last_used_at,
            revoked_at=api_key.revoked_at,
            created_by=api_key.created_by.email if api_key.created_by else None,
        )


class ApiKeyCreatedOut(ApiKeyOut):
    key: str = Field(description="The key itself. Shown this once; store it now.")


class ApiKeyCreateIn(StrictIn):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class EndUserIn(StrictIn):
    id: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    email: Annotated[str, StringConstraints(max_length=254)] | None = None
    display_name: Annotated[str, StringConstraints(max_length=200)] | None = None


class ConnectSessionCreateIn(StrictIn):
    providers: list[ProviderKey] = Field(
        default_factory=list, max_length=20, description="Providers allowed; empty for any."
    )
    end_user: EndUserIn | None = None
    ttl_seconds: int = Field(1800, ge=60, le=1800, description="Lifetime, at most 30 minutes.")

    def end_user_model(self) -> EndUser | None:
        return EndUser(**self.end_user.model_dump()) if self.end_user else None


class ConnectSessionOut(BaseModel):
    token: str
    url: str = Field(description="The connect wizard, for the end customer's browser.")
    expires_at: datetime
    providers: list[str]
