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
