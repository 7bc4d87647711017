from __future__ import annotations

from typing import Any

import uvicorn
from django.core.management.base import BaseCommand, CommandError, CommandParser

from integrations.sandbox.app import DEFAULT_PORT, LOOPBACK_HOSTS, SandboxSettings, build_app
from integrations.sandbox.hubspot.state import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET

# A request held by an injected timeout must not keep Ctrl-C (or SIGTERM) waiting for it.
SHUTDOWN_GRACE_SECONDS = 2


class Command(BaseCommand):
    help = (
        "Serve local, stateful stand-ins of the CRM providers' OAuth and APIs (HubSpot) and the "
        "sandbox control API, on loopback only. Everything lives in memory."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=DEFAULT_PORT)
        parser.add_argument(
            "--host", default="127.0.0.1", help=f"One of {', '.join(LOOPBACK_HOSTS)}."
        )
        parser.add_argument("--hubspot-client-id", default=DEFAULT_CLIENT_ID)
        parser.add_argument("--hubspot-client-secret", default=DEFAULT_CLIENT_SECRET)
        parser.add_argument(
            "--log-level", default="warning", choices=["debug", "info", "warning", "error"]
        )

    def handle(self, *args: Any, **options: Any) -> None:
        host: str = options["host"]
        port: int = options["port"]
        if host not in LOOPBACK_HOSTS:
            raise CommandError(
                f"The sandbox listens on loopback only ({', '.join(LOOPBACK_HOSTS)}), not {host!r}."
            )
        if not 0 < port < 65536:
            raise CommandError(f"Invalid port: {port}")
        app = build_app(
            SandboxSettings(
                hubspot_client_id=options["hubspot_client_id"],
                hubspot_client_secret=options["hubspot_client_secret"],
            )
        )
        base = f"http://{'[::1]' if host == '::1' else host}:{port}"
        self.stdout.write(
            f"Sandbox on {base}: HubSpot app {base}/hubspot/app, API {base}/hubspot/api, "
            f"control {base}/_sandbox (client id {options['hubspot_client_id']})."
        )
        self.stdout.flush()
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level=options["log_level"],
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
        )
