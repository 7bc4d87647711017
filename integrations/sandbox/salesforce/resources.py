"""``GET /services/data`` (the versions, no session needed), ``GET /services/data/vXX.X`` (the
resources of a version) and ``GET /services/data/vXX.X/limits``."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from . import errors, limits
from .guard import Call, rest, route_key, states

VERSIONS = (
    ("Winter '24", "59.0"),
    ("Spring '24", "60.0"),
    ("Summer '24", "61.0"),
    ("Winter '25", "62.0"),
)
RESOURCES = (
    "tooling",
    "metadata",
    "eclair",
    "folders",
    "prechatForms",
    "contact-tracing",
    "chatter",
    "tabs",
    "appMenu",
    "quickActions",
    "queryAll",
    "commerce",
    "wave",
    "iot",
    "analytics",
    "search",
    "identity",
    "composite",
    "parameterizedSearch",
    "fingerprint",
    "theme",
    "nouns",
    "recent",
    "licensing",
    "limits",
    "process",
    "async-queries",
    "query",
    "match",
    "emailConnect",
    "compactLayouts",
    "knowledgeManagement",
    "sobjects",
    "actions",
    "support",
)


async def versions(request: Request) -> Response:
    shared, _ = states(request)
    async with shared.lock:
        shared.count(route_key(request))
    return errors.respond(
        [
            {"label": label, "url": f"/services/data/v{number}", "version": number}
            for label, number in VERSIONS
        ]
    )


@rest
def resources(call: Call) -> Response:
    base = f"/services/data/v{call.version}"
    body: dict[str, Any] = {}
    for name in RESOURCES:
        body[name] = f"{base}/{name}"
    body["identity"] = call.salesforce.identity_url(call.token)
    return errors.respond(body)


def _limit(maximum: int, remaining: int | None = None) -> dict[str, int]:
    return {"Max": maximum, "Remaining": maximum if remaining is None else remaining}


@rest
def list_limits(call: Call) -> Response:
    daily = call.salesforce.limits.daily
    body: dict[str, Any] = {
        "ActiveScratchOrgs": _limit(3),
        "AnalyticsExternalDataSizeMB": _limit(40_960),
        "ConcurrentAsyncGetReportInstances": _limit(200),
        "ConcurrentSyncReportRuns": _limit(20),
        "DailyApiRequests": _limit(daily, max(daily - limits.used(call.data), 0)),
        "DailyAsyncApexExecutions": _limit(250_000),
        "DailyBulkApiBatches": _limit(15_000),
        "DailyBulkV2QueryFileStorageMB": _limit(976_562),
        "DailyBulkV2QueryJobs": _limit(10_000),
        "DailyDurableGenericStreamingApiEvents": _limit(10_000),
        "DailyDurableStreamingApiEvents": _limit(10_000),
        "DailyGenericStreamingApiEvents": _limit(10_000),
        "DailyStandardVolumePlatformEvents": _limit(10_000),
        "DailyStreamingApiEvents": _limit(10_000),
        "DailyWorkflowEmails": _limit(390),
        "DataStorageMB": _limit(200, 199),
        "FileStorageMB": _limit(20),
        "HourlyAsyncReportRuns": _limit(1_200),
        "HourlyDashboardRefreshes": _limit(200),
        "HourlyODataCallout": _limit(10_000),
        "HourlySyncReportRuns": _limit(500),
        "MassEmail": _limit(10),
        "SingleEmail": _limit(15),
    }
    return errors.respond(body)
