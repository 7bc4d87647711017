from __future__ import annotations

import uuid
from urllib.parse import urlencode

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest
from ninja import Query, Router, Status

from core.envelope import Envelope, api_responses, ok
from core.errors import NotFound, ValidationFailed
from core.pagination import PageParams, paginate

from .auth import principal_of
from .connect_sessions import connect_session_issue
from .schemas import (
    ApiKeyCreatedOut,
    ApiKeyCreateIn,
    ApiKeyOut,
    ApiKeyRef,
    ConnectSessionCreateIn,
    ConnectSessionOut,
    MeOut,
    OrganizationOut,
    UserOut,
)
from .selectors import api_key_list
from .services import api_key_create, api_key_revoke

router = Router(tags=["accounts"])


@router.get("/me", response=api_responses(Envelope[MeOut]), summary="Who am I")
async def me(request: HttpRequest) -> Envelope[MeOut]:
    p = principal_of(request)
    return ok(
        MeOut(
            organization=OrganizationOut(
                id=p.organization_id, slug=p.organization_slug, name=p.organization_name
            ),
            role=str(p.role),
            auth_method=p.method,
            user=UserOut(id=p.user_id, email=p.user_email or "") if p.user_id else None,
            api_key=ApiKeyRef(id=p.api_key_id, prefix=p.api_key_prefix or "")
            if p.api_key_id
            else None,
        )
    )


@router.get("/api-keys", response=api_responses(Envelope[list[ApiKeyOut]]), summary="List API keys")
async def api_keys_list(request: HttpRequest, page: Query[PageParams]) -> Envelope[list[ApiKeyOut]]:
    p = principal_of(request)
    rows, meta = await paginate(api_key_list(organization_id=p.organization_id), page)
    return ok([ApiKeyOut.of(row) for row in rows], pagination=meta)


@router.post(
    "/api-keys",
    response=api_responses(Envelope[ApiKeyCreatedOut], status=201),
    summary="Create an API key (the key is shown once)",
)
async def api_keys_create(
    request: HttpRequest, body: ApiKeyCreateIn
) -> Status[Envelope[ApiKeyCreatedOut]]:
    p = principal_of(request)
    p.require_manager()
    created = await sync_to_async(api_key_create)(
        organization_id=p.organization_id, name=body.name, created_by_id=p.user_id, actor=p.actor
    )
    api_key = await api_key_list(organization_id=p.organization_id).aget(pk=created.api_key.pk)
    out = ApiKeyCreatedOut(**ApiKeyOut.of(api_key).model_dump(), key=created.secret)
    return Status(201, ok(out))


@router.delete(
    "/api-keys/{key_id}", response=api_responses(Envelope[ApiKeyOut]), summary="Revoke an API key"
)
async def api_keys_revoke(request: HttpRequest, key_id: str) -> Envelope[ApiKeyOut]:
    p = principal_of(request)
    try:
        parsed = uuid.UUID(key_id)
    except ValueError:
        # Not a key id at all: the same answer as a key that is not yours.
        raise NotFound("No such API key.", details={"id": key_id}) from None
    # Another organisation's key is a 404 for every caller, members included (never a 403).
    if not await api_key_list(organization_id=p.organization_id).filter(pk=parsed).aexists():
        raise NotFound("No such API key.", details={"id": key_id})
    p.require_manager()
    api_key = await sync_to_async(api_key_revoke)(
        organization_id=p.organization_id, api_key_id=parsed, actor=p.actor
    )
    api_key = await api_key_list(organization_id=p.organization_id).aget(pk=api_key.pk)
    return ok(ApiKeyOut.of(api_key))


@router.post(
    "/connect-sessions",
    response=api_responses(Envelope[ConnectSessionOut], status=201),
    summary="Create a connect session for the embedded connect wizard",
)
async def connect_sessions_create(
    request: HttpRequest, body: ConnectSessionCreateIn
) -> Status[Envelope[ConnectSessionOut]]:
    p = principal_of(request)
    unknown = sorted(set(body.providers) - set(settings.PROVIDERS))
    if unknown:
        raise ValidationFailed(
            "Unknown providers.",
            details={"fields": {"providers": unknown}, "allowed": sorted(settings.PROVIDERS)},
        )
    issued = await sync_to_async(connect_session_issue)(
        organization_id=p.organization_id,
        providers=list(body.providers),
        end_user=body.end_user_model(),
        ttl_seconds=body.ttl_seconds,
        actor=p.actor,
    )
    return Status(
        201,
        ok(
            ConnectSessionOut(
                token=issued.token,
                url=f"{settings.PUBLIC_URL}/connect/?{urlencode({'session': issued.token})}",
                expires_at=issued.claims.expires_at,
                providers=issued.claims.providers,
            )
        ),
    )
