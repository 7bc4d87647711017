from __future__ import annotations

from django.http import HttpRequest
from ninja import Router, Status

from core.envelope import Envelope, ErrorEnvelope, error_payload, ok
from core.errors import ErrorCode
from core.health import Health, health_check

router = Router(tags=["platform"])


@router.get(
    "/health",
    auth=None,
    # 503 carries the components' report in `data`; no caller, so no 401, but throttled
    # (429), and a request with input no parameter may hold is refused (422).
    response={200: Envelope[Health], frozenset({422, 429, 500, 503}): ErrorEnvelope},
    summary="Health of the database, broker and cache",
)
async def health(request: HttpRequest) -> Status[object]:
    result = await health_check()
    if result.status == "ok":
        return Status(200, ok(result))
    down = [name for name, c in result.components.items() if c.status == "down"]
    return Status(
        503,
        error_payload(
            ErrorCode.SERVICE_UNAVAILABLE,
            f"Unavailable: {', '.join(down)}.",
            details={"down": down},
            data=result.model_dump(),
        ),
    )
