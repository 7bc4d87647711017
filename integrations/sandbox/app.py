"""The sandbox's Starlette app: every provider stand-in and the control API, on one port.

Layout (real host -> sandbox): ``https://app.hubspot.com`` -> ``/hubspot/app``,
``https://api.hubapi.com`` -> ``/hubspot/api``; the control API is ``/_sandbox``.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.routing import Mount

from . import control
from .hubspot import control as hubspot_control
from .hubspot.routes import api_routes, app_routes
from .hubspot.state import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, HubSpotConfig, HubSpotState
from .state import SandboxState

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
DEFAULT_PORT = 8400


@dataclass(frozen=True)
class SandboxSettings:
    hubspot_client_id: str = DEFAULT_CLIENT_ID
    hubspot_client_secret: str = DEFAULT_CLIENT_SECRET


def build_app(settings: SandboxSettings | None = None) -> Starlette:
    settings = settings or SandboxSettings()
    app = Starlette(
        routes=[
            Mount(
                "/_sandbox",
                routes=[*control.routes(), Mount("/hubspot", routes=hubspot_control.routes())],
            ),
            Mount("/hubspot/app", routes=app_routes()),
            Mount("/hubspot/api", routes=api_routes()),
        ]
    )
    hubspot = HubSpotState(
        HubSpotConfig(
            client_id=settings.hubspot_client_id, client_secret=settings.hubspot_client_secret
        )
    )
    app.state.sandbox = SandboxState()
    app.state.hubspot = hubspot
    app.state.providers = {"hubspot": hubspot}
    return app
