"""Normalised keys the duplicate finder matches on: emails, domains and names.

Two kinds of normal form live here. ``clean_email`` and ``clean_domain`` are what a record's
field should hold (the fixes write them). ``email_key`` and the name keys only decide whether
two records are the same person or company: they fold more (Gmail's dots, plus tags, legal
suffixes) and are never written back, since ``pat.lee+crm@gmail.com`` is still the address
the person typed.
"""

from __future__ import annotations

import re
import unicodedata

# Mailboxes anyone can open: a shared email domain says nothing about a shared employer.
FREE_MAIL = frozenset(
    {
        "gmail.com", "googlemail.com", "yahoo.com", "hotmail.com", "outlook.com", "icloud.com",
        "aol.com", "proton.me", "protonmail.com", "gmx.com", "live.com", "msn.com", "me.com",
    }
)  # fmt: skip
GMAIL = frozenset({"gmail.com", "googlemail.com"})
LEGAL_SUFFIXES = frozenset(
    {
        "inc", "incorporated", "llc", "llp", "ltd", "limited", "corp", "corporation", "co",
        "company", "gmbh", "ag", "sa", "sas", "plc", "bv", "nv", "srl", "pty", "oy", "ab", "the",
    }
)  # fmt: skip
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://")
_NOT_WORD = re.compile(r"[^a-z0-9]+")


def clean_email(raw: object) -> str | None:
    """The address as it should be stored: trimmed, lower-case (None when it is no address)."""
    if not isinstance(raw, str):
        return None
    value = raw.strip().lower()
    return value if "@" in value.strip("@") else None


def email_key(raw: object) -> str | None:
    """The mailbox an address reaches: plus tags dropped everywhere, dots dropped at Gmail
    (which ignores them), googlemail.com read as gmail.com."""
    value = clean_email(raw)
    if value is None:
        return None
    local, _, domain = value.rpartition("@")
    local = local.split("+", 1)[0]
    if domain in GMAIL:
        local, domain = local.replace(".", ""), "gmail.com"
    return f"{local}@{domain}" if local else None


def email_domain(raw: object) -> str | None:
    value = clean_email(raw)
    return value.rpartition("@")[2] if value else None


def clean_domain(raw: object) -> str | None:
    """A company domain as it should be stored: no scheme, ``www.``, port, path, query or
    trailing dot; lower-case (None when nothing is left)."""
    if not isinstance(raw, str):
        return None
    value = _SCHEME.sub("", raw.strip().lower())
    for stop in "/?#":
        value = value.split(stop, 1)[0]
    value = value.rpartition("@")[2]  # user:pass@host
    value = value.split(":", 1)[0].strip().rstrip(".")
    value = value.removeprefix("www.")
    return value or None


def _folded(text: str) -> str:
    """Lower-case ASCII words: accents dropped, punctuation as spaces."""
    plain = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in plain if not unicodedata.combining(c)).lower()
    return " ".join(_NOT_WORD.sub(" ", plain).split())


def person_name(first: object, last: object) -> str:
    """``first last`` folded for comparison ("" when there is no name)."""
    parts = [p for p in (first, last) if isinstance(p, str) and p.strip()]
    return _folded(" ".join(parts))


def company_name(raw: object) -> str:
    """A company name folded for comparison, without legal suffixes ("Acme, Inc." -> "acme")."""
    if not isinstance(raw, str):
        return ""
    words = _folded(raw).split()
    kept = [w for w in words if w not in LEGAL_SUFFIXES]
    return " ".join(kept or words)
