from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from accounts.models import Organization, User
from core.fields import EncryptedTextField


class ConnectionStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    NEEDS_REAUTH = "needs_reauth", "Needs re-authorisation"
    DISCONNECTED = "disconnected", "Disconnected"


class ConnectionQuerySet(models.QuerySet["Connection"]):
    def for_organization(self, organization_id: uuid.UUID) -> ConnectionQuerySet:
        return self.filter(organization_id=organization_id)

    def usable(self) -> ConnectionQuerySet:
        return self.filter(status=ConnectionStatus.ACTIVE)


class Connection(models.Model):
    """An organisation's authorised link to one account at one provider.

    One row per (organisation, provider, external account): connecting the same account again
    updates its tokens and scopes. Tokens are encrypted at rest and never leave this row
    through the API, the admin or the logs.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="connections"
    )
    provider = models.CharField(max_length=32)
    external_account_id = models.CharField(
        max_length=64, help_text="The provider's account id (HubSpot hub id, Salesforce org id)."
    )
    display_name = models.CharField(max_length=200, help_text="e.g. the HubSpot hub domain")
    account_user = models.CharField(
        max_length=254, blank=True, help_text="Who consented, at the provider."
    )
    status = models.CharField(
        max_length=16, choices=ConnectionStatus.choices, default=ConnectionStatus.ACTIVE
    )
    status_reason = models.TextField(blank=True)
    scopes = models.JSONField(default=list, blank=True)
    access_token = EncryptedTextField()
    refresh_token = EncryptedTextField(null=True, blank=True)
    token_expires_at = models.DateTimeField(null=True, blank=True)
    token_extra = models.JSONField(
        default=dict, blank=True, help_text="Non-secret token facts (e.g. an instance URL)."
    )
    account_extra = models.JSONField(default=dict, blank=True)
    connected_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    end_user = models.JSONField(
        null=True, blank=True, help_text="The customer-side user of the connect session."
    )
    last_refreshed_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_error_code = models.CharField(max_length=32, blank=True)
    last_error = models.TextField(blank=True)
    api_budget_used = models.PositiveIntegerField(
        null=True, blank=True, help_text="API calls used in the provider's window (its own count)."
    )
    api_budget_limit = models.PositiveIntegerField(null=True, blank=True)
    api_budget_at = models.DateTimeField(null=True, blank=True)
    budget_waited_ms = models.FloatField(
        default=0, help_text="Total time calls waited for rate-limit budget."
    )
    sync_enabled = models.BooleanField(default=True)
    sync_frequency_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="Between scheduled syncs; empty: SYNC_DEFAULT_FREQUENCY."
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ConnectionQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=("organization", "provider", "external_account_id"),
                name="connection_one_per_account",
            )
        ]
        indexes = [models.Index(fields=("organization", "-created_at"))]

    def __str__(self) -> str:
        return f"{self.provider}: {self.display_name}"


class AttemptStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    EXCHANGING = "exchanging", "Exchanging the code"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class OAuthAttempt(models.Model):
    """One trip through a provider's consent screen: state, PKCE verifier and its outcome.

    The state is single use and expires (OAUTH_ATTEMPT_TTL_SECONDS); the verifier is
    encrypted like a token.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="oauth_attempts"
    )
    provider = models.CharField(max_length=32)
    state = models.CharField(max_length=64, unique=True, editable=False)
    code_verifier = EncryptedTextField(blank=True)
    redirect_uri = models.URLField(max_length=500)
    login_url = models.URLField(
        max_length=300, blank=True, help_text="Where the person signs in (Salesforce: the org's)."
    )
    initiated_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    connect_session_id = models.UUIDField(null=True, blank=True)
    end_user = models.JSONField(null=True, blank=True)
    status = models.CharField(
        max_length=16, choices=AttemptStatus.choices, default=AttemptStatus.PENDING
    )
    error_code = models.CharField(max_length=32, blank=True)
    error_message = models.TextField(blank=True)
    connection = models.ForeignKey(
        Connection, null=True, blank=True, on_delete=models.SET_NULL, related_name="attempts"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "OAuth attempt"
        indexes = [models.Index(fields=("organization", "-created_at"))]

    def __str__(self) -> str:
        return f"{self.provider} attempt {self.created_at:%Y-%m-%d %H:%M} ({self.status})"


class ProviderCallLog(models.Model):
    """One HTTP call to a provider on behalf of a connection. Bounded per connection."""

    id = models.BigAutoField(primary_key=True)
    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="calls")
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=500)
    status = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.FloatField()
    attempt = models.PositiveSmallIntegerField(default=1)
    waited_ms = models.FloatField(default=0)
    error_code = models.CharField(max_length=32, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = [models.Index(fields=("connection", "-created_at"))]

    def __str__(self) -> str:
        return f"{self.method} {self.path} -> {self.status}"


# --- the mirror ---------------------------------------------------------------------------------


class SyncKind(models.TextChoices):
    FULL = "full", "Full read"
    INCREMENTAL = "incremental", "Incremental"
    TARGETED = "targeted", "Targeted (webhook)"


class SyncStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_SYNC_STATUSES = (SyncStatus.QUEUED, SyncStatus.RUNNING)


class SyncState(models.Model):
    """Where the mirror of one (connection, object type) stands: the provider-specific cursor
    of the read in progress (saved with each page) and the high-water mark the next
    incremental read starts from."""

    id = models.BigAutoField(primary_key=True)
    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="sync_states")
    object_type = models.CharField(max_length=16)
    cursor = models.JSONField(
        null=True, blank=True, help_text="The unfinished read's position (provider-specific)."
    )
    high_watermark = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Records modified at or after this are read by the next incremental sync.",
    )
    full_completed_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    next_run_at = models.DateTimeField(null=True, blank=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=("connection", "object_type"), name="sync_state_one_per_type"
            )
        ]

    def __str__(self) -> str:
        return f"{self.connection_id} {self.object_type}"


class SyncRun(models.Model):
    """One sync of one (connection, object type), with live progress."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="sync_runs")
    object_type = models.CharField(max_length=16)
    kind = models.CharField(max_length=16, choices=SyncKind.choices)
    trigger = models.CharField(max_length=16, help_text="schedule, api, admin or webhook")
    status = models.CharField(
        max_length=16, choices=SyncStatus.choices, default=SyncStatus.QUEUED, db_index=True
    )
    record_ids = models.JSONField(
        null=True, blank=True, help_text="Targeted syncs: the records to fetch."
    )
    pages = models.PositiveIntegerField(default=0)
    records_seen = models.PositiveIntegerField(default=0)
    records_created = models.PositiveIntegerField(default=0)
    records_updated = models.PositiveIntegerField(default=0)
    records_deleted = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    error_code = models.CharField(max_length=32, blank=True)
    error_message = models.TextField(blank=True)
    requested_by = models.CharField(max_length=200, blank=True)
    lease_owner = models.CharField(
        max_length=64, blank=True, help_text="The task attempt working on it (a crash frees it)."
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # One sync per connection and object type at a time (targeted fetches excepted).
            models.UniqueConstraint(
                fields=("connection", "object_type"),
                condition=models.Q(status__in=["queued", "running"]) & ~models.Q(kind="targeted"),
                name="sync_run_one_active",
            )
        ]
        indexes = [models.Index(fields=("connection", "-created_at"))]

    def __str__(self) -> str:
        return f"{self.kind} sync of {self.object_type} ({self.status})"


class CrmRecordQuerySet(models.QuerySet["CrmRecord"]):
    def live(self) -> CrmRecordQuerySet:
        return self.filter(deleted_at__isnull=True)


class CrmRecord(models.Model):
    """The local mirror of one provider record: unified fields plus the raw payload."""

    id = models.BigAutoField(primary_key=True)
    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="records")
    object_type = models.CharField(max_length=16)
    external_id = models.CharField(max_length=64)
    fields = models.JSONField(default=dict, help_text="Unified fields (email, name, amount...).")
    raw = models.JSONField(default=dict, help_text="The provider's own properties.")
    remote_created_at = models.DateTimeField(null=True, blank=True)
    remote_updated_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    synced_at = models.DateTimeField(default=timezone.now)

    objects = CrmRecordQuerySet.as_manager()

    class Meta:
        verbose_name = "CRM record"
        constraints = [
            models.UniqueConstraint(
                fields=("connection", "object_type", "external_id"), name="crm_record_unique"
            )
        ]
        indexes = [
            models.Index(fields=("connection", "object_type", "synced_at", "id")),
            models.Index(fields=("connection", "object_type", "remote_updated_at")),
        ]

    def __str__(self) -> str:
        return f"{self.object_type} {self.external_id}"


# --- the write outbox -----------------------------------------------------------------------------


class WriteOperation(models.TextChoices):
    CREATE = "create", "Create"
    UPDATE = "update", "Update"
    ARCHIVE = "archive", "Archive"
    ASSOCIATE = "associate", "Associate"


class WriteStatus(models.TextChoices):
    PENDING = "pending", "Pending"  # stored, not sent yet (or waiting for its next attempt)
    SENDING = "sending", "Sending"  # an attempt is in flight
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"  # the provider refused it (not retryable)
    DEAD = "dead", "Dead-lettered"  # retryable failures until attempts ran out


class CrmWrite(models.Model):
    """One CRM write, stored before it is sent: the outbox. Retried from here; never twice."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="writes")
    idempotency_key = models.CharField(max_length=200)
    request_hash = models.CharField(
        max_length=64, help_text="sha256 of the operation and payload (a reused key must match)."
    )
    operation = models.CharField(max_length=16, choices=WriteOperation.choices)
    object_type = models.CharField(max_length=16)
    record_id = models.CharField(max_length=64, blank=True, help_text="The target (not creates).")
    payload = models.JSONField(default=dict)
    source = models.CharField(max_length=16, default="api", help_text="api, admin, agent, system")
    requested_by = models.CharField(max_length=200, blank=True)
    status = models.CharField(
        max_length=16, choices=WriteStatus.choices, default=WriteStatus.PENDING, db_index=True
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    max_attempts = models.PositiveSmallIntegerField(default=8)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    uncertain = models.BooleanField(
        default=False, help_text="An attempt was sent and no answer came back."
    )
    last_error_code = models.CharField(max_length=32, blank=True)
    last_error = models.TextField(blank=True)
    result = models.JSONField(null=True, blank=True, help_text="The written record.")
    result_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "CRM write"
        constraints = [
            models.UniqueConstraint(
                fields=("organization", "idempotency_key"), name="crm_write_idempotency"
            )
        ]
        indexes = [
            models.Index(fields=("organization", "-created_at")),
            models.Index(fields=("status", "next_attempt_at")),
        ]

    def __str__(self) -> str:
        return f"{self.operation} {self.object_type} ({self.status})"


# --- webhooks ---------------------------------------------------------------------------------------


class WebhookStatus(models.TextChoices):
    RECEIVED = "received", "Received"
    PROCESSED = "processed", "Processed"
    UNROUTED = "unrouted", "No connection for this account"
    IGNORED = "ignored", "Ignored (not a record change)"
    FAILED = "failed", "Failed"


class WebhookEvent(models.Model):
    """One provider event, stored raw as it arrived (verified), whatever happens next."""

    id = models.BigAutoField(primary_key=True)
    provider = models.CharField(max_length=32)
    event_id = models.CharField(max_length=100)
    external_account_id = models.CharField(max_length=64, db_index=True)
    subscription_type = models.CharField(max_length=100, blank=True)
    object_type = models.CharField(max_length=16, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    occurred_at = models.DateTimeField(null=True, blank=True)
    payload = models.JSONField()
    status = models.CharField(
        max_length=16, choices=WebhookStatus.choices, default=WebhookStatus.RECEIVED, db_index=True
    )
    connections = models.ManyToManyField(Connection, blank=True, related_name="webhook_events")
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=("provider", "event_id"), name="webhook_event_once")
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.subscription_type} {self.event_id}"


# --- rate-limit budgets (the database storage) ------------------------------------------------------


class RateLimitKey(models.Model):
    """One key of the database rate-limit storage (``integrations.ratelimit``, used when Redis
    is not configured): the row every change to the key locks, a counter, and named numbers
    (a budget's learned limits, blocked-until, daily usage). Times are Unix seconds."""

    key = models.CharField(max_length=200, primary_key=True)
    value = models.BigIntegerField(default=0)
    data = models.JSONField(default=dict, blank=True)
    expires_at = models.FloatField(null=True, blank=True)
    locked_at = models.FloatField(default=0)

    class Meta:
        verbose_name = "rate-limit key"

    def __str__(self) -> str:
        return self.key


class RateLimitHit(models.Model):
    """One call counted in a moving window of ``key``."""

    id = models.BigAutoField(primary_key=True)
    key = models.ForeignKey(
        RateLimitKey, on_delete=models.CASCADE, related_name="hits", db_column="key"
    )
    at = models.FloatField()

    class Meta:
        indexes = [models.Index(fields=("key", "at"), name="ratelimit_hit_key_at")]

    def __str__(self) -> str:
        return f"{self.key_id} @ {self.at}"
