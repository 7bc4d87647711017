"""The embedded defaults (what ``make run`` uses on a bare machine): a workflow run on SQLite,
its checkpoints in the SQLite saver's file, waits for approval and ends after it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.processes import ROOT

pytestmark = pytest.mark.live


def test_a_workflow_runs_to_the_end_on_sqlite_with_sqlite_checkpoints(
    sandbox: Any, tmp_path: Path
) -> None:
    minted = sandbox.mint_token(hub_id=62515, expires_in=1800)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env |= {
        "SWITCHBOARD_VAR_DIR": str(tmp_path / "var"),
        "CELERY_TASK_ALWAYS_EAGER": "true",
        "SWITCHBOARD_SANDBOX_URL": sandbox.url,
        "SWITCHBOARD_SANDBOX_CA_FILE": sandbox.ca_file,
        "SANDBOX_ACCESS_TOKEN": minted["access_token"],
        "SANDBOX_REFRESH_TOKEN": minted["refresh_token"],
        "LOG_LEVEL": "WARNING",
    }
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests/workflows/embedded_run.py")],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-4000:]
    result = orjson.loads(done.stdout.decode().strip().splitlines()[-1])
    assert result["vendor"] == "sqlite"
    assert result["checkpoints"] == str(tmp_path / "var" / "checkpoints.sqlite3")
    assert result["checkpoints_exist"]
    assert result["waited"] == "waiting_approval"
    assert result["status"] == "succeeded", result["error"]
    assert result["output"]["outcome"] == "written"
    assert result["writes"] == [["contact", "succeeded"], ["note", "succeeded"]]
