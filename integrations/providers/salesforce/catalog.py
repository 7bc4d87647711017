"""Each object's fields, from Salesforce's describe, cached per org for a few minutes.

Reads select every field the describe lists (so custom ``__c`` fields come back in
``properties`` without configuration), and searches check field names and type their literals
against it. A describe costs one API call per object type and org per ``CATALOG_TTL_SECONDS``
in each process; a field added in Salesforce shows up after that.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final

from core.result import Result

from ..unified import WritableType
from .mapping import sobject
from .soql import FIELD_NAME, Catalog
from .transport import Sdk, Transport
from .wire import Describe, validate

CATALOG_TTL_SECONDS: Final = 600.0
# Compound fields repeat their components (MailingAddress = MailingStreet, ...) as nested
# objects; base64 fields cannot be read by a query of many rows.
SKIPPED_TYPES: Final = frozenset({"address", "location", "base64"})
# A query travels in the URL (REST has no POST for queries) and Salesforce caps URLs at 16 KB:
# past this many characters of field names the page selects FIELDS(ALL), which Salesforce
# serves for at most 200 rows a query.
MAX_SELECT_CHARS: Final = 6000
FIELDS_ALL: Final = "FIELDS(ALL)"
FIELDS_ALL_ROWS: Final = 200


@dataclass(frozen=True, slots=True)
class ObjectFields:
    catalog: Catalog
    select: list[str]

    @property
    def max_rows(self) -> int | None:
        """The most rows one query may ask for with this select list (None: no cap)."""
        return FIELDS_ALL_ROWS if self.select == [FIELDS_ALL] else None


def object_fields(describe: Describe) -> ObjectFields:
    catalog = {f.name.lower(): (f.name, f.type) for f in describe.fields}
    names = [
        f.name
        for f in describe.fields
        if f.type not in SKIPPED_TYPES and FIELD_NAME.fullmatch(f.name)
    ]
    if "Id" not in names:
        names.insert(0, "Id")
    if len(", ".join(names)) > MAX_SELECT_CHARS:
        names = [FIELDS_ALL]
    return ObjectFields(catalog=catalog, select=names)


_cache: dict[tuple[str, ...], tuple[float, ObjectFields]] = {}


def forget(*key: str) -> None:
    """Drop cached field lists (all, or those whose key starts with ``key``)."""
    for cached in [k for k in _cache if k[: len(key)] == key]:
        del _cache[cached]


async def fields_of(
    transport: Transport, object_type: WritableType, *, org: str
) -> Result[ObjectFields]:
    """The object's fields: cached, else ``GET /sobjects/{type}/describe``."""
    name = sobject(object_type)
    key = (transport.instance_url, org, transport.api_version, name)
    cached = _cache.get(key)
    if cached is not None and cached[0] > time.monotonic():
        return Result.ok(cached[1])

    def invoke(sdk: Sdk) -> ObjectFields:
        return object_fields(
            validate(Describe, sdk.salesforce.restful(f"sobjects/{name}/describe"))
        )

    found = await transport.call(invoke, subject=f"The {name} object")
    if found.error is None:
        _cache[key] = (time.monotonic() + CATALOG_TTL_SECONDS, found.unwrap())
    return found
