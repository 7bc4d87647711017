"""The admin's view of the mirror: sync runs with live progress, and the mirrored records."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.safestring import SafeString

from accounts.admin_scope import OrganizationScopedAdmin
from core.admin_badges import Tone, badge
from core.errors import AppError

from ..models import ACTIVE_SYNC_STATUSES, Connection, CrmRecord, SyncKind, SyncRun, SyncStatus
from .service import object_types_of, sync_cancel, sync_request

STATUS_COLOURS: dict[SyncStatus, Tone] = {
    SyncStatus.QUEUED: "grey",
    SyncStatus.RUNNING: "blue",
    SyncStatus.SUCCEEDED: "green",
    SyncStatus.FAILED: "red",
    SyncStatus.CANCELLED: "orange",
}
LIVE_REFRESH_SECONDS = 5


def _queue(
    request: HttpRequest, queryset: QuerySet[Connection], kind: SyncKind | None
) -> tuple[int, list[str]]:
    queued, problems = 0, []
    for connection in queryset:
        for object_type in object_types_of(connection):
            try:
                _, created = sync_request(
                    connection=connection,
                    object_type=object_type,
                    trigger="admin",
                    kind=kind,
                    requested_by=f"user:{request.user}",
                )
            except AppError as exc:
                problems.append(f"{connection}: {exc.message}")
                break
            queued += int(created)
    return queued, problems


def _report(
    model_admin: admin.ModelAdmin[Any], request: HttpRequest, queued: int, problems: list[str]
) -> None:
    model_admin.message_user(request, f"{queued} sync(s) queued.", messages.SUCCESS)
    for problem in problems:
        model_admin.message_user(request, problem, messages.ERROR)


@admin.action(description="Sync now (incremental, or full if never synced)")
def sync_now(
    model_admin: admin.ModelAdmin[Connection], request: HttpRequest, queryset: QuerySet[Connection]
) -> None:
    _report(model_admin, request, *_queue(request, queryset, None))


@admin.action(description="Full resync (read every record again)")
def full_resync(
    model_admin: admin.ModelAdmin[Connection], request: HttpRequest, queryset: QuerySet[Connection]
) -> None:
    _report(model_admin, request, *_queue(request, queryset, SyncKind.FULL))


@admin.register(SyncRun)
class SyncRunAdmin(OrganizationScopedAdmin[SyncRun]):
    """Runs refresh every few seconds while one on the page is queued or running."""

    organization_path = "connection__organization"

    list_display = (
        "created_at",
        "connection",
        "object_type",
        "kind",
        "status_badge",
        "pages",
        "records_seen",
        "records_created",
        "records_updated",
        "records_deleted",
        "errors",
        "duration",
    )
    list_filter = ("status", "kind", "object_type", "trigger", "connection__provider")
    search_fields = ("id", "connection__display_name", "error_code")
    list_select_related = ("connection",)
    readonly_fields = [f.name for f in SyncRun._meta.get_fields() if f.concrete]
    actions = ("cancel",)
    change_list_template = "admin/integrations/syncrun/change_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: SyncRun | None = None) -> bool:
        return False

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: SyncRun) -> SafeString:
        return badge(obj.status, obj.get_status_display(), STATUS_COLOURS)

    @admin.display(description="duration")
    def duration(self, obj: SyncRun) -> str:
        if obj.started_at is None:
            return "-"
        end = obj.finished_at or obj.heartbeat_at or obj.started_at
        return f"{(end - obj.started_at).total_seconds():.1f} s"

    @admin.action(description="Cancel (stops between pages)")
    def cancel(self, request: HttpRequest, queryset: QuerySet[SyncRun]) -> None:
        for run in queryset.filter(status__in=ACTIVE_SYNC_STATUSES):
            try:
                sync_cancel(run=run)
            except AppError as exc:
                self.message_user(request, f"{run}: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, f"{run}: cancelled", messages.SUCCESS)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        live = self.get_queryset(request).filter(status__in=ACTIVE_SYNC_STATUSES).exists()
        context = (extra_context or {}) | {"live_refresh": LIVE_REFRESH_SECONDS if live else None}
        return super().changelist_view(request, context)


@admin.register(CrmRecord)
class CrmRecordAdmin(OrganizationScopedAdmin[CrmRecord]):
    organization_path = "connection__organization"
    list_display = (
        "external_id",
        "object_type",
        "label",
        "connection",
        "remote_updated_at",
        "deleted_at",
        "synced_at",
    )
    list_filter = (
        "object_type",
        "connection__provider",
        ("deleted_at", admin.EmptyFieldListFilter),
    )
    search_fields = ("external_id", "fields__email", "fields__name", "fields__domain")
    list_select_related = ("connection",)
    readonly_fields = [f.name for f in CrmRecord._meta.get_fields() if f.concrete]
    show_full_result_count = False  # counting a big mirror on every page is slow

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: CrmRecord | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: CrmRecord | None = None) -> bool:
        return False

    @admin.display(description="record")
    def label(self, obj: CrmRecord) -> str:
        f = obj.fields or {}
        name = " ".join(str(f[k]) for k in ("first_name", "last_name") if f.get(k))
        return str(f.get("email") or f.get("name") or name or "-")


class SyncRunInline(admin.TabularInline[SyncRun, Connection]):
    """The connection page's latest syncs (the full list is under Sync runs)."""

    model = SyncRun
    fields = (
        "created_at",
        "object_type",
        "kind",
        "status",
        "pages",
        "records_seen",
        "records_created",
        "records_updated",
        "records_deleted",
        "errors",
        "error_code",
    )
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True
    verbose_name_plural = "Recent syncs (newest first)"

    def get_queryset(self, request: HttpRequest) -> QuerySet[SyncRun]:
        newest = super().get_queryset(request).order_by("-created_at").values_list("pk", flat=True)
        return SyncRun.objects.filter(pk__in=list(newest[:10])).order_by("-created_at")
