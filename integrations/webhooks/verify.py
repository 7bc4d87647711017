"""HubSpot's v3 request signature, checked before anything of a delivery is believed.

HubSpot (developers.hubspot.com, "Validating requests", v3 signature; the v3 changelog):

- ``X-HubSpot-Request-Timestamp`` is the time of sending in Unix milliseconds; a request whose
  timestamp is older than five minutes is rejected (we also reject one more than five minutes in
  the future: a clock that far ahead is not skew).
- The source string is ``method + URI + body + timestamp`` (UTF-8); its HMAC-SHA256 keyed with
  the app's client secret, base64-encoded, is ``X-HubSpot-Signature-v3``.
- The URI is the full URL HubSpot called (scheme, host, path, query), with these percent-encoded
  characters decoded first: ``%3A : %2F / %3F ? %40 @ %21 ! %24 $ %27 ' %28 ( %29 ) %2A * %2C ,
  %3B ;`` (nothing else).

Which URL is "the URL HubSpot called": behind a proxy Django sees its own host and scheme, so
the first candidate is the configured public URL (``settings.PUBLIC_URL`` + the request's path
and query string), the URL the HubSpot app's target URL is set to. The second is the URL Django
rebuilds from the request (``build_absolute_uri``: Host, which ``ALLOWED_HOSTS`` vets, and the
scheme, which ``SECURE_PROXY_SSL_HEADER`` decides), for installations reached under another
name. Accepting either costs nothing: the URL is signed content, not a secret, so a forger still
needs the client secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable

from core.errors import AppError, ErrorCode

SIGNATURE_HEADER = "X-HubSpot-Signature-v3"
TIMESTAMP_HEADER = "X-HubSpot-Request-Timestamp"

# The characters HubSpot decodes in the URI before signing, and only these.
_DECODED = {
    "3A": ":",
    "2F": "/",
    "3F": "?",
    "40": "@",
    "21": "!",
    "24": "$",
    "27": "'",
    "28": "(",
    "29": ")",
    "2A": "*",
    "2C": ",",
    "3B": ";",
}
_ENCODED = re.compile("%(" + "|".join(_DECODED) + ")", re.IGNORECASE)


class SignatureInvalid(AppError):
    """The request is not provably from the provider: 401, nothing of it is kept."""

    code = ErrorCode.SIGNATURE_INVALID
    status = 401
    default_message = "The request signature is missing or invalid."


def signature_uri(uri: str) -> str:
    """``uri`` as HubSpot signs it: the listed percent-encoded characters decoded."""
    return _ENCODED.sub(lambda m: _DECODED[m.group(1).upper()], uri)


def sign_v3(secret: str, method: str, uri: str, body: bytes, timestamp_ms: str) -> str:
    """The v3 signature of a request (base64 of HMAC-SHA256 over method + URI + body +
    timestamp). ``body`` is the raw bytes as sent: re-serialised JSON would not match."""
    message = b"".join(
        (method.upper().encode(), signature_uri(uri).encode(), body, timestamp_ms.encode())
    )
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_v3(
    *,
    secret: str,
    method: str,
    uris: Iterable[str],
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    now_ms: int,
    tolerance_ms: int,
) -> None:
    """Raise ``SignatureInvalid`` unless ``signature`` signs this request for one of ``uris``
    with a timestamp within ``tolerance_ms`` of ``now_ms``. The reason names what failed,
    never a secret or the expected signature."""
    if not signature or not timestamp:
        raise SignatureInvalid(
            f"Send the {SIGNATURE_HEADER} and {TIMESTAMP_HEADER} headers.",
            details={"reason": "missing_headers"},
        )
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 16:
        raise SignatureInvalid(
            f"{TIMESTAMP_HEADER} must be Unix time in milliseconds.",
            details={"reason": "bad_timestamp"},
        )
    age_ms = now_ms - int(timestamp)
    if age_ms > tolerance_ms:
        raise SignatureInvalid(
            "The request timestamp is too old; it may be a replay.",
            details={"reason": "stale_timestamp", "max_age_seconds": tolerance_ms // 1000},
        )
    if -age_ms > tolerance_ms:
        raise SignatureInvalid(
            "The request timestamp is in the future.", details={"reason": "future_timestamp"}
        )
    given = signature.strip().encode()
    matched = False
    for uri in dict.fromkeys(uris):
        expected = sign_v3(secret, method, uri, body, timestamp).encode()
        # Every candidate is compared (no early exit), each in constant time.
        matched |= hmac.compare_digest(expected, given)
    if not matched:
        raise SignatureInvalid(
            "The request signature does not match.", details={"reason": "mismatch"}
        )
