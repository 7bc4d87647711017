"""The instance listener's TLS: a test CA made at start-up (trustme), its certificate written
where Switchboard (in sandbox mode) and the tests trust it, and a server certificate for
``127.0.0.1``, ``::1`` and ``localhost`` issued by it. simple-salesforce only speaks ``https://``.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trustme

SERVER_NAMES = ("127.0.0.1", "::1", "localhost")


class InstanceTLS:
    def __init__(self) -> None:
        self.ca = trustme.CA(organization_name="Switchboard sandbox")
        self.cert = self.ca.issue_cert(*SERVER_NAMES)

    def write_ca(self, path: str | Path) -> Path:
        """Write the CA certificate (PEM) to ``path`` atomically, creating its directory."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".ca-", suffix=".pem")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(self.ca.cert_pem.bytes())
            os.chmod(temporary, 0o644)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return target

    def context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.cert.configure_cert(context)
        return context

    def context_factory(self) -> Callable[[Any, Callable[[], ssl.SSLContext]], ssl.SSLContext]:
        """For uvicorn's ``ssl_context_factory`` (the key never touches the disk)."""
        return lambda config, default: self.context()
