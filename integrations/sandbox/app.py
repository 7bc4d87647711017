"""The sandbox's Starlette apps: every provider stand-in and the control API.

Two listeners share one state. The HTTP one (``build_app``): ``https://app.hubspot.com`` ->
``/hubspot/app``, ``https://api.hubapi.com`` -> ``/hubspot/api``, Salesforce's login hosts
``https://login.salesforce.com`` -> ``/salesforce/login``, ``https://test.salesforce.com`` ->
``/salesforce/test`` and ``https://{domain}`` (My Domain) -> ``/salesforce/mydomain/{domain}``; the
control API is ``/_sandbox``. The TLS one (``build_instance_app``) is every Salesforce org's
``instance_url``: the REST API under ``/services/data`` (and the OAuth endpoints, as an org's own
host serves them).
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from . import control, sites
from .hubspot import control as hubspot_control
from .hubspot.routes import api_routes, app_routes
from .hubspot.state import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, HubSpotConfig, HubSpotState
from .salesforce import control as salesforce_control
from .salesforce.routes import instance_routes, login_routes
from .salesforce.state import (
    DEFAULT_CLIENT_ID as SF_CLIENT_ID,
)
from .salesforce.state import (
    DEFAULT_CLIENT_SECRET as SF_CLIENT_SECRET,
)
from .salesforce.state import (
    DEFAULT_INSTANCE_URL,
    SalesforceConfig,
    SalesforceState,
)
from .state import SandboxState

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
DEFAULT_PORT = 8400


@dataclass(frozen=True)
class SandboxSettings:
    hubspot_client_id: str = DEFAULT_CLIENT_ID
    hubspot_client_secret: str = DEFAULT_CLIENT_SECRET
    salesforce_client_id: str = SF_CLIENT_ID
    salesforce_client_secret: str = SF_CLIENT_SECRET
    salesforce_instance_url: str = DEFAULT_INSTANCE_URL  # the TLS listener


def build_app(settings: SandboxSettings | None = None) -> Starlette:
    settings = settings or SandboxSettings()
    app = Starlette(
        routes=[
            Mount(
                "/_sandbox",
                routes=[
                    *control.routes(),
                    Mount("/hubspot", routes=hubspot_control.routes()),
                    Mount("/salesforce", routes=salesforce_control.routes()),
                ],
            ),
            Mount("/hubspot/app", routes=app_routes()),
            Mount("/hubspot/api", routes=api_routes()),
            Mount("/salesforce/login", routes=login_routes()),
            Mount("/salesforce/test", routes=login_routes()),
            Mount("/salesforce/mydomain/{domain}", routes=login_routes()),
            Mount("/sites", routes=sites.routes()),
        ]
    )
    hubspot = HubSpotState(
        HubSpotConfig(
            client_id=settings.hubspot_client_id, client_secret=settings.hubspot_client_secret
        )
    )
    salesforce = SalesforceState(
        SalesforceConfig(
            client_id=settings.salesforce_client_id,
            client_secret=settings.salesforce_client_secret,
            instance_url=settings.salesforce_instance_url.rstrip("/"),
        )
    )
    app.state.sandbox = SandboxState()
    app.state.hubspot = hubspot
    app.state.salesforce = salesforce
    app.state.providers = {"hubspot": hubspot, "salesforce": salesforce}
    return app


class _NoTrailingSlash:
    """Salesforce answers ``/query/`` as ``/query`` (simple-salesforce adds the slash)."""

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.state = app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] == "http" and len(path) > 1 and path.endswith("/"):
            scope = dict(scope, path=path.rstrip("/") or "/")
        await self.app(scope, receive, send)


def build_instance_app(http_app: Starlette) -> ASGIApp:
    """The TLS listener's app (the orgs' ``instance_url``), on ``http_app``'s state."""
    instance = Starlette(routes=instance_routes())
    for name in ("sandbox", "hubspot", "salesforce", "providers"):
        setattr(instance.state, name, getattr(http_app.state, name))
    return _NoTrailingSlash(instance)
