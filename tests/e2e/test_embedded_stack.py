"""`make run` on the embedded defaults: SQLite, kombu's filesystem broker and a file cache.

The README's smoke test, end to end: the web process answers, beat -> broker -> worker -> cache
carries the heartbeat, the demo credentials work, and Ctrl-C stops every process cleanly.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.processes import ROOT, free_port, spawn, tail

# honcho starts web, worker and beat each in a session of its own: outside make's group.
STARTED = re.compile(r"\| (\w+) started \(pid=(\d+)\)")
# Inherited from an enclosing `make test`, these would make `make run` a sub-make.
MAKE_VARS = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")

pytestmark = pytest.mark.live


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


class Stack:
    """`make run` in its own process group, its output in a file."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.log = tmp_path / "make-run.log"
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("DATABASE_URL", "REDIS_URL", *MAKE_VARS)
        }
        env |= {
            "SWITCHBOARD_VAR_DIR": str(tmp_path / "var"),
            "SWITCHBOARD_PORT": str(self.port),
            "SWITCHBOARD_SANDBOX_PORT": str(free_port()),
            "WORKER_HEARTBEAT_SECONDS": "1",
        }
        self.proc = spawn(["make", "run"], env=env, log=self.log)
        self.pgid = self.proc.pid
        self.base = f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self, lines: int = 60) -> str:
        return tail(self.log, lines, title="make run output")

    def groups(self) -> list[int]:
        """make's process group, then the one of each Procfile process honcho started."""
        return [self.pgid] + [int(pid) for _, pid in STARTED.findall(self.output())]

    def alive(self) -> list[int]:
        self.proc.poll()  # reap make, or its zombie keeps the group alive
        return [pgid for pgid in self.groups() if group_alive(pgid)]

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = check()
            if result:
                return result
            assert self.proc.poll() is None, (
                f"make run exited ({self.proc.returncode}){self.tail()}"
            )
            time.sleep(0.25)
        pytest.fail(f"{what}: not within {timeout:.0f} s{self.tail()}")

    def kill(self) -> None:
        for pgid in reversed(self.groups()):
            try:
                if pgid == self.pgid or os.getpgid(pgid) == pgid:
                    os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


def test_make_run_serves_works_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    try:
        with httpx.Client(base_url=stack.base, timeout=5) as client:

            def health() -> dict[str, Any] | None:
                try:
                    response = client.get("/api/v1/health")
                except httpx.TransportError:
                    return None
                return response.json() if response.status_code == 200 else None

            body = stack.wait_for("GET /api/v1/health -> 200", health, timeout=60)
            tail = stack.tail()
            assert body["success"] is True, f"{body}{tail}"
            assert body["data"]["status"] == "ok", f"{body}{tail}"
            components = body["data"]["components"]
            assert {name: c["status"] for name, c in components.items()} == {
                "database": "up",
                "broker": "up",
                "cache": "up",
            }, f"{body}{tail}"

            # beat -> filesystem broker -> worker -> file cache -> the web process.
            stack.wait_for(
                "data.worker_heartbeat_at set",
                lambda: (health() or {}).get("data", {}).get("worker_heartbeat_at"),
                timeout=30,
            )

            for path in ("/static/ninja/swagger-ui.css", "/api/v1/docs"):
                response = client.get(path)
                assert response.status_code == 200, f"GET {path}: {response.status_code}{tail}"

            output = stack.output()
            assert re.search(
                r"Admin\s+\S+/admin/\s+email admin@switchboard\.local\s+password \S+", output
            ), f"no admin login line{tail}"
            key = re.search(r"API key\s+(\S+)\s+\(organisation 'demo'\)", output)
            assert key, f"no API key line{tail}"
            response = client.get("/api/v1/me", headers={"Authorization": f"Bearer {key[1]}"})
            assert response.status_code == 200, f"{response.text}{tail}"
            assert response.json()["data"]["organization"]["slug"] == "demo", response.text

        groups = stack.groups()
        procfile = (ROOT / "Procfile").read_text().splitlines()
        expected = 1 + sum(1 for line in procfile if ":" in line and not line.startswith("#"))
        assert expected == 6, "make, then web, worker, syncer, beat and sandbox"
        assert len(groups) == expected, f"expected every Procfile process to start{stack.tail()}"
        os.killpg(stack.pgid, signal.SIGINT)  # Ctrl-C in the terminal
        deadline = time.monotonic() + 30
        while stack.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not stack.alive(), f"still running after Ctrl-C: {stack.alive()}{stack.tail()}"
        assert "SIGKILL" not in stack.output(), f"a process had to be killed{stack.tail()}"
    finally:
        stack.kill()
