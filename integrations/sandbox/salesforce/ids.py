"""Salesforce record ids: 15 case-sensitive characters, or 18 with a case-safe suffix.

The first three characters are the object's key prefix (``00D`` Organization, ``005`` User,
``001`` Account, ``003`` Contact, ``006`` Opportunity, ``00K`` OpportunityContactRole). The
suffix encodes, for each five-character chunk, which characters are upper-case letters, so an
18-character id survives case-insensitive handling: ``normalize`` repairs the case of the first
15 characters from it, as Salesforce does.
"""

from __future__ import annotations

import re
import string

SUFFIX_ALPHABET = string.ascii_uppercase + "012345"
BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-5]{3})?$")
POD = "Dn"  # a mixed-case "instance" part, so case matters in every id


def suffix(id15: str) -> str:
    """The three case-safe characters for a 15-character id."""
    out = ""
    for chunk in range(3):
        bits = 0
        for position, char in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << position
        out += SUFFIX_ALPHABET[bits]
    return out


def make(prefix: str, number: int) -> str:
    """The 18-character id number ``number`` of the object with this key prefix."""
    digits = ""
    while True:
        number, rest = divmod(number, 62)
        digits = BASE62[rest] + digits
        if not number:
            break
    id15 = prefix + POD + "0" + digits.rjust(9, "0")
    return id15 + suffix(id15)


def normalize(value: str) -> str | None:
    """The 18-character form of a 15- or 18-character id, or None if it is not one."""
    if not _ID.match(value):
        return None
    if len(value) == 15:
        return value + suffix(value)
    head, tail = value[:15], value[15:].upper()
    repaired = ""
    for chunk in range(3):
        bits = SUFFIX_ALPHABET.index(tail[chunk])
        for position, char in enumerate(head[chunk * 5 : chunk * 5 + 5]):
            upper = bool(bits & (1 << position))
            repaired += char.upper() if upper else char.lower()
    if suffix(repaired) != tail:
        return None
    return repaired + tail


def short(id18: str) -> str:
    return id18[:15]
