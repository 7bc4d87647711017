"""The reference: Django REST framework views of the same two list queries, same JSON.

Written the way a DRF project would: an authentication class over the same API keys,
``ModelSerializer`` classes and ``APIView`` views, served synchronously (gunicorn, WSGI).
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.urls import path
from rest_framework import serializers
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed, NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.keys import key_matches, prefix_of
from accounts.models import ApiKey
from integrations.models import Connection, CrmRecord
from workflows.models import WorkflowRun

API = "/api/v1"


class KeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[AnonymousUser, ApiKey]:
        scheme, _, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
        prefix = prefix_of(token)
        key = (
            ApiKey.objects.active().filter(prefix=prefix).select_related("organization").first()
            if scheme.lower() == "bearer" and prefix
            else None
        )
        if key is None or not key_matches(token, key.key_hash):
            raise AuthenticationFailed()
        return AnonymousUser(), key


class RunSerializer(serializers.ModelSerializer[WorkflowRun]):
    workflow = serializers.CharField(source="workflow.key")
    error = serializers.SerializerMethodField()
    retry_of = serializers.UUIDField(source="retry_of_id", allow_null=True)
    connection_id = serializers.UUIDField()
    duration_ms = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()
    events_url = serializers.SerializerMethodField()

    class Meta:
        model = WorkflowRun
        fields = (
            "id",
            "workflow",
            "graph",
            "status",
            "trigger",
            "requested_by",
            "connection_id",
            "input",
            "output",
            "error",
            "attempt",
            "retry_of",
            "cancel_requested",
            "llm_model",
            "tokens_in",
            "tokens_out",
            "created_at",
            "started_at",
            "finished_at",
            "duration_ms",
            "url",
            "events_url",
        )

    def get_error(self, run: WorkflowRun) -> dict[str, str] | None:
        return {"code": run.error_code, "message": run.error_message} if run.error_code else None

    def get_duration_ms(self, run: WorkflowRun) -> float | None:
        duration = run.duration
        return round(duration.total_seconds() * 1000, 1) if duration is not None else None

    def get_url(self, run: WorkflowRun) -> str:
        return f"{API}/runs/{run.pk}"

    def get_events_url(self, run: WorkflowRun) -> str:
        return f"{API}/runs/{run.pk}/events"


class RecordSerializer(serializers.ModelSerializer[CrmRecord]):
    id = serializers.CharField(source="external_id")
    properties = serializers.JSONField(source="raw")
    created_at = serializers.DateTimeField(source="remote_created_at")
    updated_at = serializers.DateTimeField(source="remote_updated_at")

    class Meta:
        model = CrmRecord
        fields = (
            "id",
            "object_type",
            "fields",
            "properties",
            "created_at",
            "updated_at",
            "deleted_at",
            "synced_at",
        )


def _limit(request: Request) -> int:
    return max(1, min(200, int(request.query_params.get("limit", 50))))


def _cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _page(data: Any, limit: int, next_cursor: str | None, has_more: bool) -> Response:
    return Response(
        {
            "success": True,
            "data": data,
            "error": None,
            "meta": {
                "request_id": uuid.uuid4().hex,
                "pagination": {
                    "limit": limit,
                    "offset": None,
                    "next_cursor": next_cursor,
                    "has_more": has_more,
                    "total": None,
                },
            },
        }
    )


class Runs(APIView):
    authentication_classes = [KeyAuthentication]
    permission_classes: list[Any] = []

    def get(self, request: Request) -> Response:
        limit = _limit(request)
        rows = list(
            WorkflowRun.objects.filter(organization_id=request.auth.organization_id)
            .select_related("workflow")
            .order_by("-created_at", "-pk")[: limit + 1]
        )
        has_more = len(rows) > limit
        rows = rows[:limit]
        cursor = None
        if has_more and rows:
            cursor = _cursor(f'["{rows[-1].created_at.isoformat()}","{rows[-1].pk}"]')
        return _page(RunSerializer(rows, many=True).data, limit, cursor, has_more)


class Records(APIView):
    authentication_classes = [KeyAuthentication]
    permission_classes: list[Any] = []

    def get(self, request: Request, connection_id: uuid.UUID) -> Response:
        limit = _limit(request)
        org = request.auth.organization_id
        if not Connection.objects.filter(pk=connection_id, organization_id=org).exists():
            raise NotFound()
        rows = list(
            CrmRecord.objects.filter(
                connection_id=connection_id,
                object_type=request.query_params.get("object", ""),
                deleted_at__isnull=True,
            ).order_by("pk")[: limit + 1]
        )
        has_more = len(rows) > limit
        rows = rows[:limit]
        cursor = _cursor(str(rows[-1].pk)) if has_more and rows else None
        return _page(RecordSerializer(rows, many=True).data, limit, cursor, has_more)


urlpatterns = [
    path("api/v1/runs", Runs.as_view()),
    path("api/v1/connections/<uuid:connection_id>/records", Records.as_view()),
]
