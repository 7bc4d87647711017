"""The outbox in the admin: every CRM write with its status, read-only, and two actions:
"replay" (dead or failed writes, attempts reset) and "send now" (pending writes).

Payloads are the caller's record fields (no secrets); the connection is shown by name only,
never with its tokens.
"""

from __future__ import annotations

import json
from typing import Any

from asgiref.sync import async_to_sync
from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString

from accounts.admin_scope import OrganizationScopedAdmin
from accounts.audit import Actor
from core.admin_badges import Tone, badge
from core.errors import AppError

from ..models import CrmWrite, WriteStatus
from .service import write_replay, write_send_now

STATUS_COLOURS: dict[WriteStatus, Tone] = {
    WriteStatus.PENDING: "amber",
    WriteStatus.SENDING: "blue",
    WriteStatus.SUCCEEDED: "green",
    WriteStatus.FAILED: "red",
    WriteStatus.DEAD: "slate",
}


def _actor(request: HttpRequest) -> Actor:
    return Actor(label=f"user:{request.user}", user_id=request.user.pk)


class ProviderFilter(admin.SimpleListFilter):
    title = "provider"
    parameter_name = "provider"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        writes: QuerySet[CrmWrite] = model_admin.get_queryset(request)  # the caller's rows only
        providers = writes.order_by().values_list("connection__provider", flat=True).distinct()
        return [(p, p) for p in sorted(set(providers))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[CrmWrite]) -> QuerySet[CrmWrite]:
        value = self.value()
        return queryset.filter(connection__provider=value) if value else queryset


@admin.register(CrmWrite)
class CrmWriteAdmin(OrganizationScopedAdmin[CrmWrite]):
    list_display = (
        "created_at",
        "status_badge",
        "operation",
        "object_type",
        "record_id",
        "result_id",
        "connection_name",
        "organization",
        "attempts_shown",
        "next_attempt_at",
        "uncertain",
        "last_error_code",
        "source",
    )
    list_filter = ("status", "operation", ProviderFilter, "uncertain", "source", "organization")
    search_fields = ("idempotency_key", "record_id", "result_id", "=id")
    list_select_related = ("organization", "connection")
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    fields = (
        "id",
        "organization",
        "connection_name",
        "idempotency_key",
        "request_hash",
        "operation",
        "object_type",
        "record_id",
        "payload_shown",
        "source",
        "requested_by",
        "status",
        "attempts",
        "max_attempts",
        "next_attempt_at",
        "uncertain",
        "last_error_code",
        "last_error",
        "result_shown",
        "result_id",
        "created_at",
        "updated_at",
        "completed_at",
    )
    readonly_fields = fields
    actions = ("replay", "send_now")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # writes come from the API, agents and admin actions on records

    def has_change_permission(self, request: HttpRequest, obj: CrmWrite | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: CrmWrite | None = None) -> bool:
        return False  # the outbox is the record of what was written

    def has_resend_permission(self, request: HttpRequest) -> bool:
        """Rows are read-only for everyone; sending again takes the model's change right."""
        return bool(request.user.has_perm("integrations.change_crmwrite"))

    @admin.display(description="connection", ordering="connection__display_name")
    def connection_name(self, obj: CrmWrite) -> str:
        return f"{obj.connection.provider}: {obj.connection.display_name}"

    @admin.display(description="attempts")
    def attempts_shown(self, obj: CrmWrite) -> str:
        return f"{obj.attempts} / {obj.max_attempts}"

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: CrmWrite) -> SafeString:
        return badge(obj.status, obj.get_status_display(), STATUS_COLOURS)

    @admin.display(description="payload")
    def payload_shown(self, obj: CrmWrite) -> SafeString:
        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2, sort_keys=True))

    @admin.display(description="result")
    def result_shown(self, obj: CrmWrite) -> SafeString | str:
        if obj.result is None:
            return "-"
        return format_html("<pre>{}</pre>", json.dumps(obj.result, indent=2, sort_keys=True))

    @admin.action(
        description="Replay (dead or failed writes: attempts reset, sent again)",
        permissions=["resend"],
    )
    def replay(self, request: HttpRequest, queryset: QuerySet[CrmWrite]) -> None:
        replayed = skipped = 0
        for write in queryset:
            if write.status not in (WriteStatus.DEAD, WriteStatus.FAILED):
                skipped += 1
                continue
            try:
                async_to_sync(write_replay)(write=write, actor=_actor(request))
            except AppError as exc:
                self.message_user(request, f"{write.pk}: {exc.message}", messages.ERROR)
            else:
                replayed += 1
        if replayed:
            self.message_user(request, f"{replayed} write(s) queued again.", messages.SUCCESS)
        if skipped:
            self.message_user(
                request,
                f"{skipped} write(s) skipped: only dead or failed writes can be replayed.",
                messages.WARNING,
            )

    @admin.action(
        description="Send now (pending writes, without waiting for their retry)",
        permissions=["resend"],
    )
    def send_now(self, request: HttpRequest, queryset: QuerySet[CrmWrite]) -> None:
        ids = list(queryset.filter(status=WriteStatus.PENDING).values_list("pk", flat=True))
        if not ids:
            self.message_user(request, "No pending writes selected.", messages.WARNING)
            return
        sent = async_to_sync(write_send_now)(write_ids=ids, actor=_actor(request))
        counts = (
            CrmWrite.objects.filter(pk__in=ids).order_by().values("status").annotate(n=Count("pk"))
        )
        summary = ", ".join(f"{row['n']} {row['status']}" for row in counts)
        self.message_user(request, f"Sent {sent} write(s); now {summary}.", messages.SUCCESS)
