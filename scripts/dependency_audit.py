"""``make audit``: the installed environment (requirements.txt, requirements-dev.txt and
bench/requirements.txt, pinned, and everything they pull in) against the known vulnerabilities
that PyPI (and OSV, where reachable) report, through pip-audit's own services.

Each installed distribution is looked up, in this order, until one source answers:

1. PyPI's per-release JSON (``/pypi/<name>/<version>/json``): what ``pip-audit`` asks; its
   ``vulnerabilities`` are those affecting that exact release.
2. PyPI's project JSON (``/pypi/<name>/json``), when the installed version is the project's
   latest release: PyPI documents that this endpoint's ``vulnerabilities`` list the latest
   release's, so for a pin on the latest release it is the same answer as (1).
3. OSV (``api.osv.dev``), pip-audit's other service: exact versions too.

A distribution none of them could answer for is NOT AUDITED, and the report names each one
with the reason (and its latest release). The answer of every source is parsed by pip-audit;
nothing here decides whether a version is affected.

Fails (exit 1) on: a vulnerability not explained in ``.pip-audit-ignore.toml``; an ignore
entry without an id, package or reason; an installed version that differs from its pin (the
audit would not be of the pinned set); no distribution audited at all (the check would be
empty). With ``--require-complete`` (``AUDIT_REQUIRE_COMPLETE=1`` in make) any unaudited
distribution fails it too.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, distributions
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

import requests
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version
from pip_audit._service import OsvService, PyPIService
from pip_audit._service.interface import (
    Dependency,
    ResolvedDependency,
    ServiceError,
    SkippedDependency,
    VulnerabilityResult,
)

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ("requirements.txt", "requirements-dev.txt", "bench/requirements.txt")
IGNORE_FILE = ROOT / ".pip-audit-ignore.toml"
RELEASE_URL = re.compile(r"^https://pypi\.org/pypi/([^/]+)/([^/]+)/json$")
TIMEOUT = 15
WORKERS = 8

# How a distribution was audited (or why not).
RELEASE = "PyPI release JSON"
LATEST = "PyPI project JSON (installed = latest release)"
OSV = "OSV"


@dataclass
class Lookup:
    """What the sources said about one distribution."""

    name: str
    version: str
    source: str | None = None  # one of RELEASE, LATEST, OSV; None: not audited
    vulns: list[VulnerabilityResult] = field(default_factory=list)
    latest: str | None = None
    notes: list[str] = field(default_factory=list)


class ReleaseOrLatest:
    """pip-audit's PyPI session with one fallback: when the per-release JSON answers 404 and
    the installed version is the project's latest release, the project JSON answers instead
    (its ``vulnerabilities`` are the latest release's). Otherwise the 404 stands, and
    pip-audit reports the distribution as skipped. Records what happened in ``lookup``."""

    def __init__(self, inner: Any, lookup: Lookup) -> None:
        self.inner = inner
        self.lookup = lookup

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        response: requests.Response = self.inner.get(url, **kwargs)
        match = RELEASE_URL.match(url)
        if match is None:
            return response
        if response.status_code != 404:
            self.lookup.source = RELEASE
            return response
        name, wanted = match.groups()
        project: requests.Response = self.inner.get(f"https://pypi.org/pypi/{name}/json", **kwargs)
        if project.status_code != 200:
            self.lookup.notes.append(f"PyPI has no project JSON ({project.status_code})")
            return response
        body = project.json()
        latest = str(body.get("info", {}).get("version", ""))
        self.lookup.latest = latest
        files = body.get("releases", {}).get(wanted) or []
        if files and all(f.get("yanked") for f in files):
            reason = next((f.get("yanked_reason") for f in files if f.get("yanked_reason")), "")
            self.lookup.notes.append(f"the installed release is YANKED on PyPI: {reason or '?'}")
        try:
            same = Version(latest) == Version(wanted)
        except InvalidVersion:
            same = False
        if same:
            self.lookup.source = LATEST
            return project
        return response


def look_up(
    dep: ResolvedDependency, *, pypi: PyPIService, session: Any, osv: OsvService | None
) -> Lookup:
    """Ask the sources in turn (module docstring). ``session``: the HTTP session PyPI's
    service sends through (pip-audit's caching one)."""
    lookup = Lookup(dep.canonical_name, str(dep.version))
    pypi.session = ReleaseOrLatest(session, lookup)
    try:
        answered, vulns = pypi.query(dep)
        if not isinstance(answered, SkippedDependency):
            lookup.vulns = vulns
            return lookup
    except (ServiceError, requests.RequestException) as exc:
        lookup.notes.append(f"PyPI failed: {type(exc).__name__}")
    lookup.source = None
    if osv is not None:
        try:
            lookup.vulns = osv.query(dep)[1]
            lookup.source = OSV
        except (ServiceError, requests.RequestException) as exc:
            lookup.notes.append(f"OSV failed: {type(exc).__name__}")
    return lookup


_local = threading.local()


def look_up_here(dep: ResolvedDependency, cache_dir: Path | None, osv: OsvService | None) -> Lookup:
    """``look_up`` with this thread's PyPI service (its connections are reused)."""
    if not hasattr(_local, "pypi"):
        _local.pypi = PyPIService(cache_dir=cache_dir, timeout=TIMEOUT)
        _local.session = _local.pypi.session
    return look_up(dep, pypi=_local.pypi, session=_local.session, osv=osv)


def reachable_osv(
    probe: ResolvedDependency, cache_dir: Path | None
) -> tuple[OsvService | None, str]:
    """OSV's service when one query goes through, else None and why."""
    osv = OsvService(cache_dir=cache_dir, timeout=5)
    try:
        osv.query(probe)
    except (ServiceError, requests.RequestException) as exc:
        cause = exc.__cause__ or exc.__context__ or exc
        return None, f"{type(exc).__name__} ({type(cause).__name__})"
    return osv, "reachable"


def installed() -> list[Dependency]:
    """Every distribution installed for this interpreter (the virtualenv), as pip-audit's
    dependencies (read from their metadata: no pip needed, a uv-made venv has none)."""
    found: dict[str, Dependency] = {}
    for dist in distributions():
        name = dist.metadata["Name"]
        if not name or canonicalize_name(name) in found:
            continue
        try:
            dep: Dependency = ResolvedDependency(name=name, version=Version(dist.version))
        except InvalidVersion:
            dep = SkippedDependency(name=name, skip_reason=f"invalid version {dist.version!r}")
        found[canonicalize_name(name)] = dep
    return sorted(found.values(), key=lambda d: d.canonical_name)


# --- pins and explanations -----------------------------------------------------------------


def pins(path: Path, seen: set[Path] | None = None) -> Iterator[tuple[str, str, Path]]:
    """(name, pinned version, file) of every ``name==version`` line, following ``-r``."""
    seen = seen if seen is not None else set()
    if path in seen:
        return
    seen.add(path)
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith(("-r ", "--requirement ")):
            yield from pins((path.parent / line.split(None, 1)[1]).resolve(), seen)
            continue
        if not line or line.startswith("-"):
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        versions = [s.version for s in requirement.specifier if s.operator == "=="]
        if versions:
            yield canonicalize_name(requirement.name), versions[0], path


def pin_drift() -> list[str]:
    drift: list[str] = []
    for name, pinned, path in {p[:2]: p for f in REQUIREMENTS for p in pins(ROOT / f)}.values():
        try:
            have = installed_version(name)
        except PackageNotFoundError:
            drift.append(f"{name}=={pinned} ({path.relative_to(ROOT)}) is not installed")
            continue
        if Version(have) != Version(pinned):
            drift.append(f"{name}=={pinned} ({path.relative_to(ROOT)}) but {have} is installed")
    return drift


@dataclass(frozen=True)
class Explained:
    id: str
    package: str
    reason: str


def explanations(path: Path) -> tuple[list[Explained], list[str]]:
    if not path.exists():
        return [], []
    entries = tomllib.loads(path.read_text()).get("ignore", [])
    found: list[Explained] = []
    problems: list[str] = []
    for n, entry in enumerate(entries, 1):
        values = {k: str(entry.get(k, "")).strip() for k in ("id", "package", "reason")}
        missing = [k for k, v in values.items() if not v]
        if missing:
            problems.append(f"{path.name} entry {n} has no {', '.join(missing)}")
            continue
        found.append(
            Explained(values["id"], canonicalize_name(values["package"]), values["reason"])
        )
    return found, problems


def explained_by(
    lookup: Lookup, vuln: VulnerabilityResult, ignores: list[Explained]
) -> Explained | None:
    ids = {vuln.id, *vuln.aliases}
    return next((i for i in ignores if i.package == lookup.name and i.id in ids), None)


def judge(audited: list[Lookup], ignores: list[Explained]) -> tuple[int, list[str], list[str]]:
    """(vulnerabilities found, the unexplained ones as failures, lines to print: the explained
    ones with why, explanations that matched nothing, yanked releases)."""
    found, failures, lines = 0, [], []
    unused = {(i.package, i.id) for i in ignores}
    for item in audited:
        for vuln in item.vulns:
            found += 1
            ids = ", ".join(sorted({vuln.id, *vuln.aliases}))
            fixes = ", ".join(str(v) for v in vuln.fix_versions) or "none yet"
            line = f"{item.name} {item.version}: {ids} (fixed in {fixes}): {vuln.description[:160]}"
            why = explained_by(item, vuln, ignores)
            if why is None:
                failures.append(f"VULNERABLE {line}")
            else:
                unused.discard((why.package, why.id))
                lines.append(f"ignored (explained): {line}\n    because: {why.reason}")
    for package, vuln_id in sorted(unused):
        lines.append(f"note: {IGNORE_FILE.name} explains {vuln_id} for {package}; not found now")
    for item in audited:
        lines += [f"WARNING: {item.name} {item.version}: {n}" for n in item.notes if "YANKED" in n]
    return found, failures, lines


# --- the run -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument(
        "--require-complete",
        action="store_true",
        default=os.environ.get("AUDIT_REQUIRE_COMPLETE", "") not in ("", "0"),
        help="fail when any installed distribution could not be audited",
    )
    parser.add_argument("--cache-dir", type=Path, default=None, help="HTTP cache (default: pip's)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    failures: list[str] = []

    deps = installed()
    resolved = [d for d in deps if isinstance(d, ResolvedDependency)]
    skipped = [d for d in deps if isinstance(d, SkippedDependency)]
    osv, osv_state = reachable_osv(resolved[0], args.cache_dir) if resolved else (None, "")
    with ThreadPoolExecutor(WORKERS) as pool:
        lookups = list(pool.map(lambda d: look_up_here(d, args.cache_dir, osv), resolved))
    lookups.sort(key=lambda item: item.name)

    ignores, problems = explanations(IGNORE_FILE)
    failures += problems
    drift = pin_drift()
    failures += [f"not the pinned environment: {line}" for line in drift]

    audited = [item for item in lookups if item.source is not None]
    unaudited = [item for item in lookups if item.source is None]
    print(f"== dependency audit: {len(deps)} installed distributions")
    by_source = {s: sum(1 for i in audited if i.source == s) for s in (RELEASE, LATEST, OSV)}
    print(
        f"audited {len(audited)}: "
        + "; ".join(f"{count} via {source}" for source, count in by_source.items())
    )
    print(f"OSV ({OsvService(timeout=1).osv_url}): {osv_state}")

    found, unexplained, lines = judge(audited, ignores)
    failures += unexplained
    for line in lines:
        print(line)
    print(f"vulnerabilities found: {found}, unexplained: {len(unexplained)}")

    if unaudited or skipped:
        print(
            f"\n!! NOT AUDITED: {len(unaudited) + len(skipped)} of {len(deps)} installed "
            "distributions. No vulnerability source answered for these, so nothing is known "
            "about them: PyPI's per-release JSON did not answer (404 here), the installed "
            "version is not the project's latest release (the only one whose "
            f"vulnerabilities the project JSON lists), and OSV: "
            f"{osv_state}.",
        )
        for item in unaudited:
            latest = f", latest {item.latest}" if item.latest else ""
            notes = f" [{'; '.join(item.notes)}]" if item.notes else ""
            print(f"!!   {item.name} {item.version}{latest}{notes}")
        for dep in skipped:
            print(f"!!   {dep.name}: {dep.skip_reason}")
        if args.require_complete:
            failures.append(f"{len(unaudited) + len(skipped)} distributions not audited")
    if not audited:
        failures.append("no distribution could be audited: the check would be empty")

    print(f"took {time.monotonic() - started:.1f} s")
    if failures:
        print("\nAUDIT FAILED:")
        for failure in failures:
            print(f"  {failure}")
        return 1
    print("audit passed: no unexplained vulnerability in what could be audited")
    return 0


if __name__ == "__main__":
    sys.exit(main())
