"""The one error vocabulary: every failure Switchboard reports carries one of these codes.

Codes are part of the public API contract (clients switch on them); add new ones, never
rename. ``AppError`` subclasses fix the code and HTTP status; ``details`` is safe to show to
the caller and must never hold secrets.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar


class ErrorCode(StrEnum):
    BAD_REQUEST = "bad_request"
    MALFORMED_JSON = "malformed_json"
    UNAUTHENTICATED = "unauthenticated"
    CSRF_FAILED = "csrf_failed"
    PERMISSION_DENIED = "permission_denied"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    CONFLICT = "conflict"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    VALIDATION_FAILED = "validation_failed"
    RATE_LIMITED = "rate_limited"
    INTERNAL_ERROR = "internal_error"
    SERVICE_UNAVAILABLE = "service_unavailable"
    PROVIDER_ERROR = "provider_error"
    PROVIDER_UNAVAILABLE = "provider_unavailable"
    REAUTH_REQUIRED = "reauth_required"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    SIGNATURE_INVALID = "signature_invalid"


# The code a bare HTTP status maps to when nothing more specific is known.
STATUS_CODES: dict[int, ErrorCode] = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.UNAUTHENTICATED,
    403: ErrorCode.PERMISSION_DENIED,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    409: ErrorCode.CONFLICT,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    422: ErrorCode.VALIDATION_FAILED,
    429: ErrorCode.RATE_LIMITED,
    502: ErrorCode.PROVIDER_ERROR,
    503: ErrorCode.SERVICE_UNAVAILABLE,
}


def code_for_status(status: int) -> ErrorCode:
    return STATUS_CODES.get(
        status, ErrorCode.INTERNAL_ERROR if status >= 500 else ErrorCode.BAD_REQUEST
    )


class AppError(Exception):
    """A failure with a stable code, an HTTP status and caller-safe details.

    ``retryable`` tells background callers (outbox, sync, workflows) whether trying again
    later can succeed; ``retry_after`` is the wait in seconds when the cause said so.
    """

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL_ERROR
    status: ClassVar[int] = 500
    default_message: ClassVar[str] = "Internal error."
    default_retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str | None = None,
        *,
        details: dict[str, Any] | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.details: dict[str, Any] = details or {}
        self.retryable = self.default_retryable if retryable is None else retryable
        self.retry_after = retry_after
        super().__init__(self.message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code.value!r}, message={self.message!r})"


class BadRequest(AppError):
    code = ErrorCode.BAD_REQUEST
    status = 400
    default_message = "The request could not be understood."


class Unauthenticated(AppError):
    code = ErrorCode.UNAUTHENTICATED
    status = 401
    default_message = "Authentication required: send 'Authorization: Bearer <api key>'."


class PermissionDenied(AppError):
    code = ErrorCode.PERMISSION_DENIED
    status = 403
    default_message = "You do not have permission to do this."


class NotFound(AppError):
    code = ErrorCode.NOT_FOUND
    status = 404
    default_message = "Not found."


class Conflict(AppError):
    code = ErrorCode.CONFLICT
    status = 409
    default_message = "The request conflicts with the current state."


class ValidationFailed(AppError):
    code = ErrorCode.VALIDATION_FAILED
    status = 422
    default_message = "The request did not validate."


class RateLimited(AppError):
    code = ErrorCode.RATE_LIMITED
    status = 429
    default_message = "Too many requests."
    default_retryable = True


class ServiceUnavailable(AppError):
    code = ErrorCode.SERVICE_UNAVAILABLE
    status = 503
    default_message = "A service Switchboard depends on is unavailable."
    default_retryable = True


class ProviderError(AppError):
    """The provider answered, but not with something we can use (its 4xx, garbage)."""

    code = ErrorCode.PROVIDER_ERROR
    status = 502
    default_message = "The provider returned an error."


class ProviderUnavailable(ProviderError):
    """5xx, timeouts, connection failures: trying again later may work."""

    code = ErrorCode.PROVIDER_UNAVAILABLE
    status = 503
    default_message = "The provider is unavailable."
    default_retryable = True


class ProviderRateLimited(ProviderError):
    code = ErrorCode.RATE_LIMITED
    status = 429
    default_message = "The provider's rate limit was reached."
    default_retryable = True


class ProviderAuthError(ProviderError):
    """The provider no longer accepts our tokens: the connection needs re-authorisation."""

    code = ErrorCode.REAUTH_REQUIRED
    status = 409
    default_message = "The connection must be re-authorised."
