from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Generator
from typing import Any

import uvicorn
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from integrations.sandbox.app import (
    DEFAULT_PORT,
    LOOPBACK_HOSTS,
    SandboxSettings,
    build_app,
    build_instance_app,
)
from integrations.sandbox.hubspot.state import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from integrations.sandbox.salesforce.state import DEFAULT_CLIENT_ID as SF_CLIENT_ID
from integrations.sandbox.salesforce.state import DEFAULT_CLIENT_SECRET as SF_CLIENT_SECRET
from integrations.sandbox.salesforce.tls import InstanceTLS

# A request held by an injected timeout must not keep Ctrl-C (or SIGTERM) waiting for it:
# in-flight requests get this long to finish, then both listeners stop regardless.
SHUTDOWN_GRACE_SECONDS = 2
FORCE_EXIT_AFTER_SECONDS = 0.5


class _Listener(uvicorn.Server):
    """One of the sandbox's two servers; the command handles the signals for both."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def _serve(servers: list[_Listener]) -> None:
    loop = asyncio.get_running_loop()

    def force() -> None:
        for server in servers:
            server.force_exit = True

    def stop() -> None:
        if any(server.should_exit for server in servers):
            force()  # a second signal: stop waiting for anything
            return
        for server in servers:
            server.should_exit = True
        loop.call_later(FORCE_EXIT_AFTER_SECONDS, force)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    try:
        await asyncio.gather(*(server.serve() for server in servers))
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


class Command(BaseCommand):
    help = (
        "Serve local, stateful stand-ins of the CRM providers' OAuth and APIs (HubSpot, "
        "Salesforce) and the sandbox control API, on loopback only, plus Salesforce's instance "
        "API over TLS on a second port (its test CA written to --ca-file). Everything lives in "
        "memory."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=DEFAULT_PORT)
        parser.add_argument(
            "--tls-port",
            type=int,
            default=None,
            help="Salesforce's instance API (https); default: --port + 1.",
        )
        parser.add_argument(
            "--ca-file",
            default=None,
            help="Where to write the test CA's certificate (PEM); default: "
            "settings.SWITCHBOARD_SANDBOX_CA_FILE.",
        )
        parser.add_argument(
            "--host", default="127.0.0.1", help=f"One of {', '.join(LOOPBACK_HOSTS)}."
        )
        parser.add_argument("--hubspot-client-id", default=DEFAULT_CLIENT_ID)
        parser.add_argument("--hubspot-client-secret", default=DEFAULT_CLIENT_SECRET)
        parser.add_argument("--salesforce-client-id", default=SF_CLIENT_ID)
        parser.add_argument("--salesforce-client-secret", default=SF_CLIENT_SECRET)
        parser.add_argument(
            "--log-level", default="warning", choices=["debug", "info", "warning", "error"]
        )

    def handle(self, *args: Any, **options: Any) -> None:
        host: str = options["host"]
        port: int = options["port"]
        tls_port: int = options["tls_port"] if options["tls_port"] is not None else port + 1
        if host not in LOOPBACK_HOSTS:
            raise CommandError(
                f"The sandbox listens on loopback only ({', '.join(LOOPBACK_HOSTS)}), not {host!r}."
            )
        for value in (port, tls_port):
            if not 0 < value < 65536:
                raise CommandError(f"Invalid port: {value}")
        if port == tls_port:
            raise CommandError("--port and --tls-port must differ.")
        shown = "[::1]" if host == "::1" else host
        base, instance_url = f"http://{shown}:{port}", f"https://{shown}:{tls_port}"
        tls = InstanceTLS()
        ca_file = tls.write_ca(options["ca_file"] or settings.SWITCHBOARD_SANDBOX_CA_FILE)
        app = build_app(
            SandboxSettings(
                hubspot_client_id=options["hubspot_client_id"],
                hubspot_client_secret=options["hubspot_client_secret"],
                salesforce_client_id=options["salesforce_client_id"],
                salesforce_client_secret=options["salesforce_client_secret"],
                salesforce_instance_url=instance_url,
            )
        )
        common: dict[str, Any] = {
            "host": host,
            "log_level": options["log_level"],
            "access_log": False,
            "lifespan": "off",
            "timeout_graceful_shutdown": SHUTDOWN_GRACE_SECONDS,
        }
        servers = [
            _Listener(uvicorn.Config(app, port=port, **common)),
            _Listener(
                uvicorn.Config(
                    build_instance_app(app),
                    port=tls_port,
                    ssl_context_factory=tls.context_factory(),
                    **common,
                )
            ),
        ]
        self.stdout.write(
            f"Sandbox on {base}: HubSpot app {base}/hubspot/app, API {base}/hubspot/api; "
            f"Salesforce login {base}/salesforce/login (sandbox orgs {base}/salesforce/test), "
            f"instance {instance_url} (CA {ca_file}); control {base}/_sandbox "
            f"(client ids {options['hubspot_client_id']}, {options['salesforce_client_id']})."
        )
        self.stdout.flush()
        asyncio.run(_serve(servers))
