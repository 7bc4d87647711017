"""A task through a real Celery worker process on Redis: broker in, Django's Redis cache out."""

from __future__ import annotations

import os
import pickle
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from config.celery import app  # the test process's app: REDIS_URL is its broker too
from core.tasks import HEARTBEAT_KEY
from tests.processes import ROOT, spawn, stop, tail

pytestmark = pytest.mark.live


def test_heartbeat_task_runs_on_a_real_worker(tmp_path: Path) -> None:
    if not os.environ.get("REDIS_URL"):
        pytest.skip("REDIS_URL is not set: this test needs a Redis broker and cache")
    queue = f"test-{uuid.uuid4().hex}"
    prefix = str(uuid.uuid4())
    key = f"{prefix}:1:{HEARTBEAT_KEY}"
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    log = tmp_path / "worker.log"
    env = os.environ | {"CACHE_KEY_PREFIX": prefix, "SWITCHBOARD_VAR_DIR": str(tmp_path)}
    celery = str(ROOT / ".venv/bin/celery")
    options = ("--pool", "solo", "--concurrency", "1", "--without-gossip", "--without-mingle")
    worker = [celery, "-A", "config", "worker", "-Q", queue, *options, "--loglevel", "INFO"]
    proc = spawn(worker, env=env, log=log)
    try:
        # Wait for the worker to declare its queue (a name not in task_queues: Celery
        # creates it), so the message is not published before the queue is bound.
        deadline = time.monotonic() + 30
        while "ready." not in log.read_text(errors="replace"):
            assert proc.poll() is None, f"worker exited ({proc.returncode}){tail(log)}"
            assert time.monotonic() < deadline, f"worker not ready within 30 s{tail(log)}"
            time.sleep(0.2)
        assert f".> {queue}" in log.read_text(errors="replace"), tail(log)

        app.send_task("core.heartbeat", queue=queue)

        raw = None
        deadline = time.monotonic() + 30
        while raw is None and time.monotonic() < deadline:
            assert proc.poll() is None, f"worker exited ({proc.returncode}){tail(log)}"
            raw = client.get(key)
            if raw is None:
                time.sleep(0.2)
        assert isinstance(raw, bytes), f"no {key!r} in Redis within 30 s{tail(log)}"
        beat_at = datetime.fromisoformat(pickle.loads(raw))  # noqa: S301 - our own cache value
        assert timedelta(0) <= datetime.now(UTC) - beat_at < timedelta(minutes=1), beat_at
    finally:
        stop(proc)
        client.delete(
            key,
            queue,  # the queue's list, if anything was left in it
            f"_kombu.binding.{queue}",
            f"_kombu.binding_permanent.{queue}",
        )
        client.close()
    assert proc.returncode == 0, f"worker did not stop cleanly ({proc.returncode}){tail(log)}"
