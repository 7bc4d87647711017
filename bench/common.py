"""What every benchmark shares: services, a throwaway database, the sandbox, workers, figures.

A benchmark is a script ``bench/<name>.py`` that runs alone (``python bench/<name>.py``), prints
its own table and, with ``--json PATH``, writes its figures for ``bench/run.py`` (``make bench``)
to gather into one table and ``bench/RESULTS.md``. Nothing here asserts: goals are compared and
reported, never turned into pass/fail tests.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.processes import free_port, spawn, stop, tail  # noqa: E402

PG = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
REDIS_BASE = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")
PYTHON = str(ROOT / ".venv" / "bin" / "python")
BIN = ROOT / ".venv" / "bin"
WORK = Path(os.environ.get("BENCH_DIR", ROOT / "var" / "bench"))

__all__ = [
    "BIN",
    "PG",
    "PYTHON",
    "ROOT",
    "WORK",
    "Figure",
    "Report",
    "bench_env",
    "django_setup",
    "ensure_services",
    "free_port",
    "fresh_database",
    "rss_bytes",
    "sandbox",
    "spawn",
    "spread",
    "stop",
    "tail",
    "wait_http",
    "worker",
]


def sh(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(args, check=True, cwd=ROOT, env=env, capture_output=True, text=True)
    return done.stdout


def _up(*args: str) -> bool:
    return subprocess.run(args, capture_output=True, check=False).returncode == 0


def ensure_services() -> None:
    """PostgreSQL and Redis on their local defaults, started when down (as ``.ci/run`` does)."""
    if not _up("pg_isready", "-h", "127.0.0.1", "-p", "5432", "-q"):
        version = sorted(os.listdir("/etc/postgresql"))[0]
        sh("pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start")
    if not _up("redis-cli", "-h", "127.0.0.1", "-p", "6379", "ping"):
        os.makedirs("/var/lib/redis", exist_ok=True)
        sh(
            "redis-server",
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "--port",
            "6379",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            "/var/lib/redis",
        )
    for _ in range(60):
        if _up("pg_isready", "-h", "127.0.0.1", "-p", "5432", "-q") and _up(
            "redis-cli", "-h", "127.0.0.1", "-p", "6379", "ping"
        ):
            return
        time.sleep(0.5)
    raise SystemExit("PostgreSQL or Redis did not come up")


def fresh_database(name: str) -> str:
    """Drop and create database ``name``; its URL."""
    sh("psql", f"{PG}/postgres", "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    sh("psql", f"{PG}/postgres", "-qc", f"CREATE DATABASE {name}")
    return f"{PG}/{name}"


def bench_env(
    *, database: str, redis_db: int, work: Path, sandbox_url: str | None = None
) -> dict[str, str]:
    """Production-like settings (DEBUG off, warnings only in logs) on a database of its own;
    the database is created and migrated here, the Redis db flushed."""
    work.mkdir(parents=True, exist_ok=True)
    redis_url = f"{REDIS_BASE}/{redis_db}"
    sh("redis-cli", "-u", redis_url, "flushdb")
    env = dict(os.environ) | {
        "DATABASE_URL": fresh_database(database),
        "REDIS_URL": redis_url,
        "SWITCHBOARD_VAR_DIR": str(work / "var"),
        "SWITCHBOARD_SANDBOX_CA_FILE": str(work / "ca.pem"),
        "DEBUG": "false",
        "SECRET_KEY": "bench-" + "x" * 50,
        "LOG_LEVEL": "WARNING",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PYTHONUNBUFFERED": "1",
    }
    if sandbox_url:
        env["SWITCHBOARD_SANDBOX_URL"] = sandbox_url
    sh(PYTHON, "manage.py", "migrate", "--noinput", "-v0", env=env)
    return env


def django_setup(env: dict[str, str]) -> None:
    """Use the benchmark's settings in this process too (for seeding and reading results)."""
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


def wait_http(
    url: str, *, timeout: float = 60, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"{url}: the server exited ({proc.returncode})")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {timeout} s")


@dataclass
class Sandbox:
    url: str
    control: httpx.Client


@contextmanager
def sandbox(env: dict[str, str], work: Path) -> Iterator[Sandbox]:
    """The provider sandbox on free ports; ``env`` gains ``SWITCHBOARD_SANDBOX_URL``."""
    port, tls_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    env["SWITCHBOARD_SANDBOX_URL"] = url
    proc = spawn(
        [
            *(PYTHON, "manage.py", "sandbox", "--port", str(port), "--tls-port", str(tls_port)),
            *("--ca-file", str(work / "ca.pem")),
        ],
        env=env,
        log=work / "sandbox.log",
    )
    try:
        wait_http(f"{url}/_sandbox/health", proc=proc)
        with httpx.Client(base_url=f"{url}/_sandbox", timeout=60) as control:
            yield Sandbox(url=url, control=control)
    finally:
        stop(proc, grace=10)


@contextmanager
def worker(
    env: dict[str, str],
    work: Path,
    *,
    queues: str,
    name: str,
    pool: str = "threads",
    concurrency: int = 4,
) -> Iterator[subprocess.Popen[bytes]]:
    """One Celery worker process; waits until it answers a ping."""
    log = work / f"{name}.log"
    proc = spawn(
        [
            *(str(BIN / "celery"), "-A", "config", "worker", "-Q", queues, "--pool", pool),
            *("--concurrency", str(concurrency), "--without-gossip", "--without-mingle"),
            *("--hostname", f"{name}@%h", "--loglevel", "WARNING"),
        ],
        env=env,
        log=log,
    )
    try:
        node = f"{name}@{socket.gethostname()}"  # ping destinations are exact node names
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"worker {name} exited{tail(log)}")
            pinged = subprocess.run(
                [
                    *(str(BIN / "celery"), "-A", "config", "inspect", "ping"),
                    *("-d", node, "--timeout", "1"),
                ],
                cwd=ROOT,
                env=env,
                capture_output=True,
                check=False,
            )
            if pinged.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"worker {name} did not answer a ping within 60 s{tail(log)}")
            time.sleep(0.5)  # each ping is a process of its own (Django and Celery imports)
        yield proc
    finally:
        stop(proc, grace=20)


def rss_bytes(pid: int, *, children: bool = True) -> int:
    """Resident memory of ``pid`` (and, by default, its child processes)."""
    pids = [pid]
    if children:
        try:
            out = subprocess.run(
                ["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False
            ).stdout
            pids += [int(p) for p in out.split()]
        except ValueError:
            pass
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except FileNotFoundError:
            continue
    return total


def spread(values: Sequence[float]) -> tuple[float, float, float]:
    """(median, min, max) of per-round figures."""
    return statistics.median(values), min(values), max(values)


@dataclass
class Figure:
    """One measured figure, with its side-by-side reference and its goal when it has them."""

    name: str
    value: float
    unit: str
    low: float | None = None  # spread across rounds
    high: float | None = None
    reference: str = ""  # what it is compared with, with that figure
    goal: str = ""
    met: bool | None = None

    def shown(self) -> str:
        value = _number(self.value)
        if self.low is not None and self.high is not None:
            value += f" ({_number(self.low)}-{_number(self.high)})"
        return f"{value} {self.unit}".strip()


def _number(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 100 else f"{x:,.0f}"


@dataclass
class Report:
    benchmark: str
    command: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    measured_at: str = ""  # UTC, set when written

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure

    def print(self) -> None:
        print(f"\n## {self.benchmark}")
        width = max((len(f.name) for f in self.figures), default=10)
        for f in self.figures:
            met = {True: "met", False: "MISSED", None: ""}[f.met]
            goal = f"goal {f.goal} {met}".strip() if f.goal else ""
            ref = f"[{f.reference}]" if f.reference else ""
            print(f"{f.name:<{width}}  {f.shown():<28} {goal:<26} {ref}")
        for note in self.notes:
            print(f"  note: {note}")

    def write(self, path: str | None) -> None:
        if path:
            self.measured_at = self.measured_at or datetime.now(UTC).strftime("%Y-%m-%d %H:%M")
            Path(path).write_text(json.dumps(asdict(self), indent=2))


def load_report(path: Path) -> Report:
    raw: dict[str, Any] = json.loads(path.read_text())
    figures = [Figure(**f) for f in raw.pop("figures")]
    return Report(figures=figures, **raw)
