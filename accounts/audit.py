"""Who acted, and the audit trail every mutation writes (a row and a log line)."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from core.context import current_request_id

from .models import AuditEvent

logger = logging.getLogger("switchboard.audit")


@dataclass(frozen=True, slots=True)
class Actor:
    """The person, API key or system process a mutation is attributed to."""

    label: str
    user_id: int | None = None
    api_key_id: uuid.UUID | None = None

    @classmethod
    def system(cls, what: str) -> Actor:
        return cls(label=f"system:{what}")


def audit_record(
    *,
    actor: Actor,
    action: str,
    entity_type: str,
    entity_id: object,
    organization_id: uuid.UUID | None,
    changes: dict[str, Any] | None = None,
) -> AuditEvent:
    """Write one audit row (inside the caller's transaction) and log the same facts."""
    event = AuditEvent.objects.create(
        organization_id=organization_id,
        actor_user_id=actor.user_id,
        actor_api_key_id=actor.api_key_id,
        actor_label=actor.label,
        action=action,
        entity_type=entity_type,
        entity_id=str(entity_id),
        changes=changes or {},
        request_id=current_request_id() or "",
    )
    logger.info(
        "%s %s %s:%s",
        actor.label,
        action,
        entity_type,
        entity_id,
        extra={
            "audit_action": action,
            "entity_type": entity_type,
            "entity_id": str(entity_id),
            "actor": actor.label,
            "audit_organization_id": str(organization_id) if organization_id else None,
        },
    )
    return event
