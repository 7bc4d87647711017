from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from accounts.admin_scope import OrganizationScopedAdmin
from accounts.audit import Actor
from core.admin_badges import Tone, badge
from core.errors import AppError

from .models import Connection, ConnectionStatus, OAuthAttempt, ProviderCallLog
from .outbox import admin as _outbox_admin  # noqa: F401 - registers the outbox's admin
from .ratelimit import budget_snapshot
from .services.connections import connection_disconnect, connection_test
from .services.tokens import connection_refresh_token
from .sync.admin import SyncRunInline, full_resync, sync_now

logger = logging.getLogger(__name__)

BADGE_COLOURS: dict[ConnectionStatus, Tone] = {
    ConnectionStatus.ACTIVE: "green",
    ConnectionStatus.NEEDS_REAUTH: "orange",
    ConnectionStatus.DISCONNECTED: "grey",
}


def _actor(request: HttpRequest) -> Actor:
    return Actor(label=f"user:{request.user}", user_id=request.user.pk)


class ProviderCallInline(admin.TabularInline[ProviderCallLog, Connection]):
    model = ProviderCallLog
    fields = (
        "created_at",
        "method",
        "path",
        "status",
        "duration_ms",
        "attempt",
        "waited_ms",
        "error_code",
    )
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    ordering = ("-created_at",)
    verbose_name_plural = "Recent provider calls (newest first; the log keeps the last 500)"

    def get_queryset(self, request: HttpRequest) -> QuerySet[ProviderCallLog]:
        newest = super().get_queryset(request).order_by("-id").values_list("id", flat=True)[:50]
        return ProviderCallLog.objects.filter(id__in=list(newest)).order_by("-id")


@admin.register(Connection)
class ConnectionAdmin(OrganizationScopedAdmin[Connection]):
    """Tokens are never shown: only their expiry and when they were last refreshed."""

    list_display = (
        "display_name",
        "provider",
        "organization",
        "status_badge",
        "token_expires_at",
        "api_budget",
        "budget_waited",
        "last_used_at",
        "last_error_code",
        "created_at",
    )
    list_filter = ("provider", "status", "organization")
    search_fields = ("display_name", "external_account_id", "account_user", "organization__name")
    list_select_related = ("organization",)
    ordering = ("-created_at", "-id")  # autocomplete pages through it: keep it ordered
    fields = (
        "id",
        "organization",
        "provider",
        "display_name",
        "external_account_id",
        "account_user",
        "status",
        "status_reason",
        "scopes",
        "token_expires_at",
        "last_refreshed_at",
        "instance_url",
        "api_budget",
        "api_budget_at",
        "rate_limit_budget",
        "budget_waited",
        "last_used_at",
        "last_error_code",
        "last_error",
        "connected_by",
        "end_user",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields
    inlines = (SyncRunInline, ProviderCallInline)
    actions = ("test_connection", "refresh_token_now", sync_now, full_resync, "disconnect")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # connections come from the connect wizard

    def has_delete_permission(self, request: HttpRequest, obj: Connection | None = None) -> bool:
        return False  # "disconnect" revokes at the provider first and audits

    @admin.display(description="instance URL")
    def instance_url(self, obj: Connection) -> str:
        return str(obj.token_extra.get("instance_url", "")) or "-"

    @admin.display(description="API budget used")
    def api_budget(self, obj: Connection) -> str:
        if obj.api_budget_used is None:
            return "-"
        if not obj.api_budget_limit:
            return str(obj.api_budget_used)
        share = obj.api_budget_used / obj.api_budget_limit
        return f"{obj.api_budget_used} / {obj.api_budget_limit} ({share:.0%})"

    @admin.display(description="rate-limit budget left")
    def rate_limit_budget(self, obj: Connection) -> SafeString:
        """Each window of the account's shared budget, as every process sees it now."""
        try:
            snapshot = async_to_sync(budget_snapshot)(obj.provider, obj.external_account_id)
        except Exception:  # the page must render even when the budget storage is down
            logger.warning("rate-limit budget unavailable", exc_info=True)
            return format_html("{}", "unavailable")
        lines: list[tuple[str, tuple[object, ...]]] = []
        if snapshot.blocked_until is not None:
            lines.append(
                (
                    "blocked until {} (the provider refused a call)",
                    (snapshot.blocked_until.isoformat(timespec="seconds"),),
                )
            )
        for w in snapshot.windows:
            frees = f", next call frees in {w.resets_in:g} s" if w.resets_in else ""
            lines.append(
                (
                    "{}: {} of {} left (limit {} per {} s, from the {}){}",
                    (w.name, w.remaining, w.usable, w.limit, f"{w.seconds:g}", w.source, frees),
                )
            )
        if snapshot.provider_limit is not None:
            lines.append(
                (
                    "provider's count: {} of {}",
                    (snapshot.provider_used, snapshot.provider_limit),
                )
            )
        if not lines:
            return format_html("{}", "no limits known")
        return format_html_join("\n", "<div>{}</div>", ((format_html(f, *a),) for f, a in lines))

    @admin.display(description="waited for budget", ordering="budget_waited_ms")
    def budget_waited(self, obj: Connection) -> str:
        seconds = obj.budget_waited_ms / 1000
        return f"{seconds:.1f} s" if seconds >= 0.1 else "-"

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Connection) -> SafeString:
        return badge(obj.status, obj.get_status_display(), BADGE_COLOURS)

    @admin.action(description="Test selected connections with their provider")
    def test_connection(self, request: HttpRequest, queryset: QuerySet[Connection]) -> None:
        for connection in queryset:
            outcome = async_to_sync(connection_test)(connection=connection)
            if (error := outcome.error) is None:
                self.message_user(request, f"{connection}: OK", messages.SUCCESS)
            else:
                self.message_user(
                    request, f"{connection}: {error.code}: {error.message}", messages.ERROR
                )

    @admin.action(description="Refresh the access token now")
    def refresh_token_now(self, request: HttpRequest, queryset: QuerySet[Connection]) -> None:
        for connection in queryset:
            try:
                connection_refresh_token(
                    connection_id=connection.pk, rejected=None, actor=_actor(request)
                )
            except AppError as exc:
                self.message_user(
                    request, f"{connection}: {exc.code}: {exc.message}", messages.ERROR
                )
            else:
                self.message_user(request, f"{connection}: token refreshed", messages.SUCCESS)

    @admin.action(description="Disconnect (revoke at the provider and delete)")
    def disconnect(self, request: HttpRequest, queryset: QuerySet[Connection]) -> None:
        for connection in list(queryset):
            revoked = async_to_sync(connection_disconnect)(
                connection=connection, actor=_actor(request)
            )
            note = (
                "revoked at the provider" if revoked else "the provider did not confirm the revoke"
            )
            self.message_user(request, f"{connection}: disconnected ({note})", messages.SUCCESS)


@admin.register(OAuthAttempt)
class OAuthAttemptAdmin(OrganizationScopedAdmin[OAuthAttempt]):
    list_display = (
        "created_at",
        "provider",
        "organization",
        "status",
        "error_code",
        "connection",
        "initiated_by",
    )
    list_filter = ("provider", "status", "error_code")
    search_fields = ("organization__name", "error_code", "error_message")
    list_select_related = ("organization", "connection", "initiated_by")
    fields = (
        "id",
        "organization",
        "provider",
        "status",
        "error_code",
        "error_message",
        "connection",
        "initiated_by",
        "connect_session_id",
        "end_user",
        "redirect_uri",
        "created_at",
        "expires_at",
        "completed_at",
    )  # state and the PKCE verifier are deliberately left out
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: OAuthAttempt | None = None) -> bool:
        return False


# The other parts register their own admin pages.
from .webhooks import admin as _webhooks_admin  # noqa: E402, F401
