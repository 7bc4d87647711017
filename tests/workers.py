"""Real Celery worker processes for live tests, on this test run's database and Redis.

``celery_worker`` starts ``celery -A config worker`` with the test database's URL, the same
secrets as the test process (it decrypts the tokens the test stored) and the sandbox's URLs;
``Worker.kill()`` SIGKILLs it mid-work, as a crash or an OOM kill would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import connection

from tests.processes import ROOT, spawn, stop, tail


def drop_queues(*names: str) -> None:
    """Delete these Celery queues (and kombu's bindings of them) from the test run's Redis."""
    if url := os.environ.get("REDIS_URL"):
        client = redis.Redis.from_url(url)
        for name in names:
            client.delete(name, f"_kombu.binding.{name}", f"_kombu.binding_permanent.{name}")
        client.close()


@contextmanager
def live_queue(prefix: str, needs: str) -> Iterator[str]:
    """A Celery queue of this test's own, dropped at the end; skips the test without the
    PostgreSQL and Redis a worker or server process shares with it (``needs`` says who)."""
    if not os.environ.get("REDIS_URL") or not os.environ.get("DATABASE_URL"):
        pytest.skip(f"{needs} need PostgreSQL (DATABASE_URL) and Redis (REDIS_URL)")
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        drop_queues(name)


def process_env(tmp_path: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child process sharing this test's database and secrets."""
    db_url = os.environ.get("DATABASE_URL", "")
    test_db = connection.settings_dict["NAME"]
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    if db_url:
        env["DATABASE_URL"] = db_url.rsplit("/", 1)[0] + f"/{test_db}"
    else:
        env["DATABASE_URL"] = f"sqlite:///{test_db}"
    env |= {
        "SWITCHBOARD_VAR_DIR": str(tmp_path / "var"),
        "DEBUG": "false",
        "SECRET_KEY": settings.SECRET_KEY,
        "FIELD_ENCRYPTION_KEYS": ",".join(settings.FIELD_ENCRYPTION_KEYS),
    }
    if settings.SWITCHBOARD_SANDBOX_URL:
        env["SWITCHBOARD_SANDBOX_URL"] = settings.SWITCHBOARD_SANDBOX_URL
        env["SWITCHBOARD_SANDBOX_CA_FILE"] = settings.SWITCHBOARD_SANDBOX_CA_FILE
    return env | (extra or {})


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 60) -> str:
        return tail(self.log, lines, title="worker output")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the worker's whole process group: no cleanup, no acknowledgement."""
        with suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


@contextmanager
def celery_worker(
    tmp_path: Path,
    *,
    queues: str = "default,sync,writes,workflows",
    concurrency: int = 2,
    env: dict[str, str] | None = None,
    name: str = "worker",
) -> Iterator[Worker]:
    """A worker consuming ``queues`` (thread pool), stopped (or already killed) at exit."""
    if not os.environ.get("REDIS_URL"):
        raise RuntimeError("live worker tests need REDIS_URL (the broker)")
    log = tmp_path / f"{name}.log"
    command = [
        str(ROOT / ".venv/bin/celery"),
        "-A",
        "config",
        "worker",
        "-Q",
        queues,
        "--pool",
        "threads",
        "--concurrency",
        str(concurrency),
        "--without-gossip",
        "--without-mingle",
        "--hostname",
        f"{name}-{os.getpid()}-{time.monotonic_ns()}@%h",
        "--loglevel",
        "INFO",
    ]
    proc = spawn(command, env=process_env(tmp_path, env), log=log)
    worker = Worker(proc, log)
    try:
        deadline = time.monotonic() + 30
        while "ready." not in log.read_text(errors="replace"):
            assert proc.poll() is None, f"worker exited ({proc.returncode}){worker.tail()}"
            assert time.monotonic() < deadline, f"worker not ready within 30 s{worker.tail()}"
            time.sleep(0.2)
        yield worker
    finally:
        if worker.alive():
            stop(proc, grace=20)
