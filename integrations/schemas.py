from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .models import Connection
from .ratelimit import BudgetSnapshot


class ConnectionOut(BaseModel):
    """A connection as the API shows it: everything but the tokens."""

    id: uuid.UUID
    provider: str
    display_name: str
    external_account_id: str
    account_user: str
    status: str
    status_reason: str
    scopes: list[str]
    token_expires_at: datetime | None
    last_refreshed_at: datetime | None
    last_used_at: datetime | None
    last_error_code: str
    last_error: str
    end_user: dict[str, Any] | None
    created_at: datetime

    @classmethod
    def of(cls, c: Connection) -> ConnectionOut:
        return cls(
            id=c.pk,
            provider=c.provider,
            display_name=c.display_name,
            external_account_id=c.external_account_id,
            account_user=c.account_user,
            status=c.status,
            status_reason=c.status_reason,
            scopes=list(c.scopes),
            token_expires_at=c.token_expires_at,
            last_refreshed_at=c.last_refreshed_at,
            last_used_at=c.last_used_at,
            last_error_code=c.last_error_code,
            last_error=c.last_error,
            end_user=c.end_user,
            created_at=c.created_at,
        )


class ConnectionBudgetOut(BudgetSnapshot):
    """The connection's provider account budget, shared by every connection to that account
    (and every process), with the time this connection's calls waited for it."""

    connection_id: uuid.UUID
    waited_seconds_total: float = Field(
        description="Time this connection's calls spent waiting for budget, in total."
    )

    @classmethod
    def of(cls, c: Connection, snapshot: BudgetSnapshot) -> ConnectionBudgetOut:
        return cls(
            **snapshot.model_dump(),
            connection_id=c.pk,
            waited_seconds_total=round(c.budget_waited_ms / 1000, 3),
        )


class ConnectionDeletedOut(BaseModel):
    id: uuid.UUID
    deleted: bool = True
    revoked_at_provider: bool = Field(description="Whether the provider confirmed the revoke.")


class ConnectionTestOut(BaseModel):
    ok: bool
    account: str
    scopes: list[str]


class ArchivedOut(BaseModel):
    id: str
    archived: bool = True


class AssociationsOut(BaseModel):
    ids: list[str]


class StrictBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
