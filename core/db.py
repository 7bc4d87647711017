"""PostgreSQL reads without Django's pure-Python timestamp loader.

Django's psycopg 3 backend loads every ``timestamptz`` through a Python subclass of psycopg's
loader (to attach the connection's time zone), which keeps psycopg's C loader out of the way:
a 50-row page of runs parses about 300 timestamps that way. Django puts every connection's
session in UTC (``USE_TZ``, no ``TIME_ZONE`` per database), and psycopg's C loader then returns
exactly what Django's does, a datetime in ``datetime.UTC``. ``install_fast_timestamps`` puts the
C loader back in the adapters template Django gives every new connection, behind a small class
that still answers Django's ``loader.timezone`` question.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.conf import settings
from django.db import connections


def install_fast_timestamps() -> bool:
    """Use psycopg's C ``timestamptz`` loader for UTC connections; False when not applicable
    (no PostgreSQL, no C implementation, ``USE_TZ`` off or a database with its own zone)."""
    uses_utc_postgres = settings.USE_TZ and any(
        conn.vendor == "postgresql" and conn.settings_dict.get("TIME_ZONE") is None
        for conn in connections.all(initialized_only=False)
    )
    if not uses_utc_postgres:
        return False
    import psycopg
    from django.db.backends.postgresql.psycopg_any import (  # type: ignore[import-untyped]
        get_adapters_template,
    )
    from psycopg import abc
    from psycopg.abc import AdaptContext
    from psycopg.adapt import Loader
    from psycopg.pq import Format

    if psycopg.pq.__impl__ == "python":
        return False
    oid = psycopg.adapters.types["timestamptz"].oid
    found = psycopg.adapters.get_loader(oid, Format.TEXT)
    if found is None:
        return False
    c_loader: type[abc.Loader] = found

    class UtcTimestamptzLoader(Loader):
        # Django's create_cursor compares this with the connection's zone.
        timezone = datetime.UTC

        def __init__(self, oid: int, context: AdaptContext | None = None) -> None:
            super().__init__(oid, context)
            self._c = c_loader(oid, context)
            self.load = self._c.load  # type: ignore[method-assign]  # the C method, no frame

        def load(self, data: Any) -> Any:  # replaced per instance, above
            return self._c.load(data)

    get_adapters_template(True, datetime.UTC).register_loader("timestamptz", UtcTimestamptzLoader)
    return True
