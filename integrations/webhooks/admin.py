"""Webhook events in the admin: what arrived, where it went, and "replay"."""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from accounts.admin_scope import OrganizationScopedAdmin, organization_scope
from accounts.audit import Actor
from core.admin_badges import Tone, badge

from ..models import WebhookEvent, WebhookStatus
from .service import webhook_replay

BADGE_COLOURS: dict[WebhookStatus, Tone] = {
    WebhookStatus.RECEIVED: "blue",
    WebhookStatus.PROCESSED: "green",
    WebhookStatus.UNROUTED: "orange",
    WebhookStatus.IGNORED: "grey",
    WebhookStatus.FAILED: "red",
}

# Set by ``get_object`` on the event a page shows: the organisations the viewer may see.
_SCOPE = "_admin_scope"


def _scope_of(event: WebhookEvent) -> frozenset[uuid.UUID] | None:
    # Not set (the event came from elsewhere than get_object): show no organisation's part.
    scope: frozenset[uuid.UUID] | None = event.__dict__.get(_SCOPE, frozenset())
    return scope


@admin.register(WebhookEvent)
class WebhookEventAdmin(OrganizationScopedAdmin[WebhookEvent]):
    """Events are kept as they arrived: nothing here edits or deletes one.

    Staff other than superusers see the events routed to their organisations' connections
    (an unrouted event belongs to nobody yet), and on an event only their own connections and
    the errors about them. Replaying routes an event again to every organisation connected
    to its account, so it is for superusers.
    """

    organization_path = "connections__organization"

    list_display = (
        "received_at",
        "provider",
        "subscription_type",
        "external_account_id",
        "object_id",
        "status_badge",
        "attempts",
        "event_id",
        "processed_at",
    )
    list_filter = ("provider", "status", "subscription_type")
    search_fields = ("=event_id", "=external_account_id", "=object_id")
    date_hierarchy = "received_at"
    ordering = ("-received_at", "-id")
    fields = (
        "id",
        "provider",
        "event_id",
        "external_account_id",
        "subscription_type",
        "object_type",
        "object_id",
        "occurred_at",
        "status_badge",
        "attempts",
        "error_shown",
        "routed_to",
        "received_at",
        "processed_at",
        "payload_pretty",
    )
    readonly_fields = fields
    actions = ("replay",)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[WebhookEvent], search_term: str
    ) -> tuple[QuerySet[WebhookEvent], bool]:
        # HubSpot's event id is stored as "<portal>:<eventId>": the bare eventId finds it too.
        found, duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        if term.isdigit():
            found = found | queryset.filter(event_id__endswith=f":{term}")
        return found, duplicates

    def get_object(
        self, request: HttpRequest, object_id: str, from_field: Any = None
    ) -> WebhookEvent | None:
        event = super().get_object(request, object_id, from_field)
        if event is not None:
            event.__dict__[_SCOPE] = organization_scope(request)
        return event

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # events come from providers

    def has_replay_permission(self, request: HttpRequest) -> bool:
        return organization_scope(request) is None and self.has_change_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: WebhookEvent | None = None) -> bool:
        return False  # the record of what a provider said

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: WebhookEvent) -> SafeString:
        return badge(obj.status, obj.get_status_display(), BADGE_COLOURS)

    @admin.display(description="routed to")
    def routed_to(self, obj: WebhookEvent) -> SafeString | str:
        scope = _scope_of(obj)
        routed = obj.connections.select_related("organization")
        if scope is not None:
            routed = routed.filter(organization_id__in=scope)
        connections = list(routed)
        if not connections:
            return "-"
        return format_html_join(
            SafeString("<br>"),
            '<a href="{}">{}</a> ({})',
            (
                (
                    reverse("admin:integrations_connection_change", args=[c.pk]),
                    c.display_name,
                    c.organization.name,
                )
                for c in connections
            ),
        )

    @admin.display(description="error")
    def error_shown(self, obj: WebhookEvent) -> SafeString | str:
        """The processing errors; for other staff than superusers, without the lines about
        other organisations' connections."""
        lines = obj.error.splitlines()
        scope = _scope_of(obj)
        if scope is not None:
            mine = obj.connections.filter(organization_id__in=scope).values_list("pk", flat=True)
            own = {f"connection {pk}" for pk in mine}
            lines = [
                line
                for line in lines
                if not line.startswith("connection ") or line.split(":")[0] in own
            ]
        if not lines:
            return "-"
        return format_html_join(SafeString("<br>"), "{}", ((line,) for line in lines))

    @admin.display(description="payload")
    def payload_pretty(self, obj: WebhookEvent) -> SafeString:
        text = json.dumps(obj.payload, indent=2, sort_keys=True, ensure_ascii=False)
        return format_html('<pre class="sb-text">{}</pre>', text)

    @admin.action(
        description="Replay: route again and re-trigger the fetches", permissions=["replay"]
    )
    def replay(self, request: HttpRequest, queryset: QuerySet[WebhookEvent]) -> None:
        actor = Actor(label=f"user:{request.user}", user_id=request.user.pk)
        outcome = webhook_replay(event_ids=list(queryset.values_list("pk", flat=True)), actor=actor)
        parts = [
            f"{outcome.processed} processed",
            f"{outcome.unrouted} unrouted",
            f"{outcome.ignored} ignored",
            f"{outcome.failed} failed",
            f"{len(outcome.sync_runs)} targeted syncs queued",
        ]
        if outcome.skipped:
            parts.append(f"{outcome.skipped} skipped (being processed right now)")
        level = messages.WARNING if outcome.failed or outcome.unrouted else messages.SUCCESS
        self.message_user(request, "Replayed: " + ", ".join(parts) + ".", level)
