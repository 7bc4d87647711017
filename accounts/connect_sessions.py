"""Connect-session tokens: short-lived JWTs that let an end customer's browser open the connect
wizard for one organisation (and, optionally, only some providers) without an API key.

Issued by an API caller (``POST /api/v1/connect-sessions``), checked by the wizard. HS256 with
a key derived from ``SECRET_KEY``; at most ``CONNECT_SESSION_MAX_TTL_SECONDS`` (30 min).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt
from django.conf import settings
from django.utils import timezone
from django.utils.crypto import salted_hmac
from pydantic import BaseModel, ValidationError

from core.errors import PermissionDenied, Unauthenticated, ValidationFailed

from .audit import Actor, audit_record

ISSUER = "switchboard"
AUDIENCE = "switchboard:connect"
ALGORITHM = "HS256"


class EndUser(BaseModel):
    """Who, on the customer's side, is connecting (their own ids; shown back on the connection)."""

    id: str
    email: str | None = None
    display_name: str | None = None


class ConnectSessionClaims(BaseModel):
    session_id: uuid.UUID
    organization_id: uuid.UUID
    providers: list[str]  # empty: any provider
    end_user: EndUser | None
    expires_at: datetime

    def allows(self, provider: str) -> bool:
        return not self.providers or provider in self.providers


@dataclass(frozen=True, slots=True)
class IssuedConnectSession:
    token: str
    claims: ConnectSessionClaims


def _signing_key() -> bytes:
    return salted_hmac("switchboard.connect_session", "signing-key", algorithm="sha256").digest()


def connect_session_issue(
    *,
    organization_id: uuid.UUID,
    providers: list[str],
    end_user: EndUser | None,
    ttl_seconds: int,
    actor: Actor,
) -> IssuedConnectSession:
    limit = settings.CONNECT_SESSION_MAX_TTL_SECONDS
    if not 1 <= ttl_seconds <= limit:
        raise ValidationFailed(
            f"ttl_seconds must be between 1 and {limit}.",
            details={"fields": {"ttl_seconds": f"1..{limit}"}},
        )
    now = timezone.now()
    claims = ConnectSessionClaims(
        session_id=uuid.uuid4(),
        organization_id=organization_id,
        providers=sorted(set(providers)),
        end_user=end_user,
        expires_at=(now + timedelta(seconds=ttl_seconds)).replace(microsecond=0),
    )
    payload = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": str(organization_id),
        "jti": str(claims.session_id),
        "iat": int(now.timestamp()),
        "exp": int(claims.expires_at.timestamp()),
        "providers": claims.providers,
        "end_user": end_user.model_dump() if end_user else None,
    }
    token = jwt.encode(payload, _signing_key(), algorithm=ALGORITHM)
    audit_record(
        actor=actor,
        action="connect_session.created",
        entity_type="connect_session",
        entity_id=claims.session_id,
        organization_id=organization_id,
        changes={"providers": claims.providers, "expires_at": claims.expires_at.isoformat()},
    )
    return IssuedConnectSession(token=token, claims=claims)


def connect_session_verify(token: str, *, provider: str | None = None) -> ConnectSessionClaims:
    """The claims of a valid, unexpired token (for ``provider``, when given).

    Raises ``Unauthenticated`` (details.reason ``expired`` or ``invalid``) for a bad token and
    ``PermissionDenied`` for a provider the session does not allow. Touches no database: the
    caller still loads the organisation, which may have gone.
    """
    try:
        payload = jwt.decode(
            token,
            _signing_key(),
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "jti", "aud", "iss"]},
        )
        claims = ConnectSessionClaims(
            session_id=payload["jti"],
            organization_id=payload["sub"],
            providers=payload.get("providers") or [],
            end_user=payload.get("end_user"),
            expires_at=datetime.fromtimestamp(payload["exp"], tz=timezone.get_current_timezone()),
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthenticated(
            "This connect session has expired; ask for a new link.", details={"reason": "expired"}
        ) from exc
    except (jwt.InvalidTokenError, ValidationError, KeyError) as exc:
        raise Unauthenticated(
            "This connect session is not valid.", details={"reason": "invalid"}
        ) from exc
    if provider is not None and not claims.allows(provider):
        raise PermissionDenied(
            f"This connect session does not allow {provider!r}.",
            details={"provider": provider, "allowed": claims.providers},
        )
    return claims
