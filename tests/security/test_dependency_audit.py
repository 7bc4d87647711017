"""``make audit`` (scripts/dependency_audit.py): which source answers for a distribution, what
pip-audit makes of PyPI's answer, and what fails the audit. PyPI is faked at the HTTP
boundary (a session answering canned JSON); pip-audit's own service parses every answer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests
from packaging.version import Version
from pip_audit._service import PyPIService
from pip_audit._service.interface import ResolvedDependency

from scripts import dependency_audit as audit

VULN = {
    "id": "PYSEC-2099-1",
    "aliases": ["CVE-2099-0001", "GHSA-aaaa-bbbb-cccc"],
    "summary": "Something bad",
    "details": "Details.",
    "fixed_in": ["2.0.1"],
    "link": "https://osv.dev/vulnerability/PYSEC-2099-1",
    "source": "osv",
    "withdrawn": None,
}


def answer(url: str, status: int, body: Any = None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.url = url
    response._content = json.dumps(body if body is not None else {"message": "Not Found"}).encode()
    response.headers["Content-Type"] = "application/json"
    return response


class PyPI:
    """PyPI as this machine sees it: the per-release JSON answers 404 unless ``releases``
    says otherwise; the project JSON answers with ``latest`` and its vulnerabilities."""

    def __init__(
        self,
        latest: str,
        vulns: list[dict[str, Any]],
        *,
        release_ok: bool = False,
        yanked: str | None = None,
    ) -> None:
        self.latest, self.vulns, self.release_ok, self.yanked = latest, vulns, release_ok, yanked
        self.asked: list[str] = []

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        self.asked.append(url)
        if url.count("/") == 6:  # /pypi/<name>/<version>/json
            if not self.release_ok:
                return answer(url, 404)
            return answer(url, 200, {"info": {"version": "x"}, "vulnerabilities": self.vulns})
        files = [{"filename": "f", "yanked": self.yanked is not None, "yanked_reason": self.yanked}]
        body = {
            "info": {"version": self.latest},
            "releases": {"1.0": files, self.latest: files},
            "vulnerabilities": self.vulns,
        }
        return answer(url, 200, body)


def dep(version: str) -> ResolvedDependency:
    return ResolvedDependency(name="Example-Pkg", version=Version(version))


@pytest.fixture
def pypi(tmp_path: Path) -> PyPIService:
    return PyPIService(cache_dir=tmp_path / "cache", timeout=1)


def test_an_installed_latest_release_is_audited_from_the_project_json(pypi: PyPIService) -> None:
    site = PyPI("2.0.0", [VULN])
    found = audit.look_up(dep("2.0.0"), pypi=pypi, session=site, osv=None)
    assert found.source == audit.LATEST
    assert [v.id for v in found.vulns] == ["PYSEC-2099-1"]
    assert found.vulns[0].aliases == {"CVE-2099-0001", "GHSA-aaaa-bbbb-cccc"}
    assert found.vulns[0].fix_versions == [Version("2.0.1")]
    assert site.asked == [
        "https://pypi.org/pypi/example-pkg/2.0.0/json",
        "https://pypi.org/pypi/example-pkg/json",
    ]


def test_an_older_release_is_not_audited_and_says_why(pypi: PyPIService) -> None:
    site = PyPI("2.0.0", [VULN])  # the latest's vulnerabilities say nothing about 1.0
    found = audit.look_up(dep("1.0"), pypi=pypi, session=site, osv=None)
    assert found.source is None
    assert found.vulns == []
    assert found.latest == "2.0.0"


def test_the_release_json_is_used_where_it_answers(pypi: PyPIService) -> None:
    site = PyPI("2.0.0", [VULN], release_ok=True)
    found = audit.look_up(dep("1.0"), pypi=pypi, session=site, osv=None)
    assert found.source == audit.RELEASE
    assert [v.id for v in found.vulns] == ["PYSEC-2099-1"]
    assert len(site.asked) == 1


def test_a_yanked_release_is_reported(pypi: PyPIService) -> None:
    site = PyPI("2.0.0", [], yanked="security issue")
    found = audit.look_up(dep("2.0.0"), pypi=pypi, session=site, osv=None)
    assert any("YANKED" in note and "security issue" in note for note in found.notes)
    lines = audit.judge([found], [])[2]
    assert any("YANKED" in line for line in lines)


def test_an_unexplained_vulnerability_fails_and_an_explained_one_does_not(
    pypi: PyPIService, tmp_path: Path
) -> None:
    found = audit.look_up(dep("2.0.0"), pypi=pypi, session=PyPI("2.0.0", [VULN]), osv=None)
    count, failures, _ = audit.judge([found], [])
    assert count == 1
    assert len(failures) == 1
    assert "VULNERABLE example-pkg 2.0.0" in failures[0]
    assert "CVE-2099-0001" in failures[0]

    ignore = tmp_path / "ignore.toml"
    ignore.write_text(
        '[[ignore]]\nid = "GHSA-aaaa-bbbb-cccc"\npackage = "example_pkg"\n'
        'reason = "Only the unused frobnicate() is affected."\n'
        '[[ignore]]\nid = "PYSEC-2000-9"\npackage = "other"\nreason = "An old one."\n'
    )
    ignores, problems = audit.explanations(ignore)
    assert problems == []
    count, failures, lines = audit.judge([found], ignores)
    assert (count, failures) == (1, [])
    assert any("because: Only the unused frobnicate()" in line for line in lines)
    assert any("PYSEC-2000-9" in line and "not found now" in line for line in lines)


def test_an_explanation_needs_a_reason(tmp_path: Path) -> None:
    ignore = tmp_path / "ignore.toml"
    ignore.write_text('[[ignore]]\nid = "GHSA-aaaa-bbbb-cccc"\npackage = "example"\n')
    ignores, problems = audit.explanations(ignore)
    assert ignores == []
    assert problems == ["ignore.toml entry 1 has no reason"]


def test_the_project_ignore_file_is_valid() -> None:
    ignores, problems = audit.explanations(audit.IGNORE_FILE)
    assert problems == []
    for entry in ignores:
        assert len(entry.reason) > 20, entry


def test_pins_are_read_through_includes() -> None:
    pinned = {
        name: version for name, version, _ in audit.pins(audit.ROOT / "bench/requirements.txt")
    }
    assert pinned["django"]  # from requirements.txt, two includes away
    assert pinned["pip-audit"]
    assert pinned["djangorestframework"]
