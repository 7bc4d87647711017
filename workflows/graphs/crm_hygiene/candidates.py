"""Finding likely duplicates without comparing every record with every other.

Records are first put in buckets by an exact key (a contact's mailbox, a company's domain):
records sharing one are the same. Fuzzy name matching (``difflib``) runs only inside blocks
of records that already share something (a contact's company or business email domain; a
company's name prefix), and inside a block larger than ``ALL_PAIRS_MAX`` only between
neighbours in name order (the sorted-neighbourhood method), so the work grows with the number
of records, not its square. Matches join into groups (union-find); a group is every record
linked to another by a match.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from difflib import SequenceMatcher
from itertools import combinations
from typing import Any

from .keys import (
    FREE_MAIL,
    clean_domain,
    clean_email,
    company_name,
    email_domain,
    email_key,
    person_name,
)
from .state import Fix, HygieneType

ALL_PAIRS_MAX = 30  # a block this small is compared pair by pair (435 pairs at most)
NEIGHBOURS = 10  # in a bigger block, each name is compared with the next ten in name order
_DIGITS = re.compile(r"\d+")


@dataclass(frozen=True, slots=True)
class MirrorRecord:
    id: str
    fields: dict[str, Any]
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Match:
    """A group of records that look like one: their ids (mirror order) and why."""

    object_type: HygieneType
    ids: tuple[str, ...]
    reasons: tuple[str, ...]
    exact: bool


@dataclass
class _Links:
    """Union-find over record positions, remembering why records were joined and the exact
    keys (mailboxes, domains) each group holds, so a fuzzy match through a record without
    one cannot chain two records with conflicting keys into one group."""

    keys: list[str | None]
    parent: list[int] = field(init=False)
    held: dict[int, frozenset[str]] = field(init=False)
    edges: list[tuple[int, str, bool]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.parent = list(range(len(self.keys)))
        self.held = {i: frozenset({k}) if k else frozenset() for i, k in enumerate(self.keys)}

    def root(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def keys_of(self, i: int) -> frozenset[str]:
        return self.held[self.root(i)]

    def join(self, i: int, j: int, reason: str, *, exact: bool) -> None:
        a, b = self.root(i), self.root(j)
        if a != b:
            low, high = min(a, b), max(a, b)
            self.parent[high] = low
            self.held[low] = self.held[low] | self.held.pop(high)
        self.edges.append((i, reason, exact))

    def groups(self) -> list[tuple[list[int], list[str], bool]]:
        members: dict[int, list[int]] = defaultdict(list)
        for i in range(len(self.parent)):
            members[self.root(i)].append(i)
        reasons: dict[int, list[str]] = defaultdict(list)
        exact: dict[int, bool] = defaultdict(bool)
        for i, reason, is_exact in self.edges:
            r = self.root(i)
            if reason not in reasons[r] and len(reasons[r]) < 5:
                reasons[r].append(reason)
            exact[r] = exact[r] or is_exact
        return [(m, reasons[r], exact[r]) for r, m in members.items() if len(m) > 1]


class Likeness:
    """difflib's ratio measured against one threshold: 0.0 as soon as a cheap upper bound
    (lengths, then shared characters from counts kept for the run) shows a pair is under
    it, so the full ratio runs only for the few pairs that could pass. Names whose numbers
    differ ("Store 12", "Store 13") are different things however alike the rest is."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._counts: dict[str, dict[str, int]] = {}

    def __call__(self, a: str, b: str) -> float:
        if a == b:
            return 1.0
        bound = self.threshold * (len(a) + len(b))
        if 2 * min(len(a), len(b)) < bound:
            return 0.0
        if _DIGITS.findall(a) != _DIGITS.findall(b):
            return 0.0
        if 2 * _shared(self._count(a), self._count(b)) < bound:
            return 0.0
        return SequenceMatcher(None, a, b, autojunk=False).ratio()

    def alike(self, a: str, b: str) -> bool:
        return self(a, b) >= self.threshold

    def _count(self, text: str) -> dict[str, int]:
        found = self._counts.get(text)
        if found is None:
            found = self._counts[text] = dict(Counter(text))
        return found


def _shared(a: dict[str, int], b: dict[str, int]) -> int:
    """How many characters two strings have in common, counted with repeats (difflib's
    quick_ratio, without building a matcher)."""
    total = 0
    for char, n in a.items():
        m = b.get(char)
        if m:
            total += n if n < m else m
    return total


def _pairs(block: list[tuple[int, str]]) -> Iterator[tuple[int, int, str, str]]:
    """The pairs of a block to compare: all of them in a small block; in a big one, each
    name with its next ``NEIGHBOURS`` in name order and in reversed-word order (so a typo
    in the first name still leaves the last names side by side)."""
    if len(block) <= ALL_PAIRS_MAX:
        for (i, a), (j, b) in combinations(block, 2):
            yield i, j, a, b
        return
    seen: set[tuple[int, int]] = set()
    for order in (lambda m: m[1], lambda m: " ".join(reversed(m[1].split()))):
        ranked = sorted(block, key=lambda m: (order(m), m[0]))
        for k, (i, a) in enumerate(ranked):
            for j, b in ranked[k + 1 : k + 1 + NEIGHBOURS]:
                pair = (min(i, j), max(i, j))
                if pair not in seen:
                    seen.add(pair)
                    yield i, j, a, b


def _fuzzy(
    links: _Links,
    blocks: Iterable[list[tuple[int, str]]],
    likeness: Likeness,
    allowed: Callable[[frozenset[str], frozenset[str]], bool],
) -> None:
    for block in blocks:
        if len(block) < 2:
            continue
        for i, j, a, b in _pairs(block):
            if links.root(i) == links.root(j) or not allowed(links.keys_of(i), links.keys_of(j)):
                continue
            ratio = likeness(a, b)
            if ratio >= likeness.threshold:
                links.join(i, j, f"similar names ({a!r} ~ {b!r}, {ratio:.2f})", exact=False)


def _exact(links: _Links, label: str) -> None:
    first: dict[str, int] = {}
    for i, key in enumerate(links.keys):
        if not key:
            continue
        if key in first:
            links.join(first[key], i, f"same {label} {key}", exact=True)
        else:
            first[key] = i


def contact_matches(records: list[MirrorRecord], threshold: float) -> list[Match]:
    """Contacts reaching one mailbox, and contacts at one company or business email domain
    with alike names (unless both have addresses that are clearly different)."""
    links = _Links([email_key(r.fields.get("email")) for r in records])
    _exact(links, "mailbox")
    blocks: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for i, r in enumerate(records):
        name = person_name(r.fields.get("first_name"), r.fields.get("last_name"))
        if not name:
            continue
        if company := r.fields.get("company_id"):
            blocks[f"company:{company}"].append((i, name))
        domain = email_domain(r.fields.get("email"))
        if domain and domain not in FREE_MAIL:
            blocks[f"domain:{domain}"].append((i, name))

    likeness = Likeness(threshold)

    def alike(a: str, b: str) -> bool:
        local_a, _, host_a = a.partition("@")
        local_b, _, host_b = b.partition("@")
        return host_a == host_b and likeness.alike(local_a, local_b)

    def addresses_agree(a: frozenset[str], b: frozenset[str]) -> bool:
        return all(alike(x, y) for x in a for y in b)

    _fuzzy(links, blocks.values(), likeness, addresses_agree)
    return _matches("contact", records, links)


def company_matches(records: list[MirrorRecord], threshold: float) -> list[Match]:
    """Companies on one domain, and companies with alike names where at most one has a
    domain (two known, different domains are two companies: a subsidiary, a region)."""
    links = _Links([clean_domain(r.fields.get("domain")) for r in records])
    _exact(links, "domain")
    blocks: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for i, r in enumerate(records):
        name = company_name(r.fields.get("name"))
        if len(name) >= 2:
            blocks[name[:3]].append((i, name))

    def domains_agree(a: frozenset[str], b: frozenset[str]) -> bool:
        return not a or not b or a == b

    _fuzzy(links, blocks.values(), Likeness(threshold), domains_agree)
    return _matches("company", records, links)


def _matches(object_type: HygieneType, records: list[MirrorRecord], links: _Links) -> list[Match]:
    found = [
        Match(object_type, tuple(records[i].id for i in members), tuple(reasons), exact)
        for members, reasons, exact in links.groups()
    ]
    # Exact matches first, then bigger groups: what a capped run proposes is the surest.
    found.sort(key=lambda m: (not m.exact, -len(m.ids), m.ids))
    return found


def field_fixes(object_type: HygieneType, records: Iterable[MirrorRecord]) -> Iterator[Fix]:
    """Values stored in a form the CRM should not hold: an email with capitals or spaces,
    a company domain with a scheme, ``www.`` or a path."""
    name, clean = ("email", clean_email) if object_type == "contact" else ("domain", clean_domain)
    for record in records:
        raw = record.fields.get(name)
        if isinstance(raw, str) and raw:
            fixed = clean(raw)
            if fixed and fixed != raw:
                yield Fix(
                    object_type=object_type,
                    record_id=record.id,
                    field=name,
                    before=raw,
                    after=fixed,
                )
