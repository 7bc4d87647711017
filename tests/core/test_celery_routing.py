"""Each task lands in its own queue, once: a message for ``sync`` must not also be copied into
``default``, ``writes`` and ``workflows`` (what shared routing keys on one exchange do)."""

from __future__ import annotations

import os
import uuid
from typing import cast

import pytest
import redis

from config.celery import QUEUES, app


def test_every_queue_has_its_own_routing_key() -> None:
    keys = {name: app.amqp.queues[name].routing_key for name in QUEUES}
    assert keys == {name: name for name in QUEUES}
    assert app.amqp.router.route({}, "integrations.sync.run")["queue"].name == "sync"
    assert app.amqp.router.route({}, "integrations.outbox.send")["queue"].name == "writes"
    assert app.amqp.router.route({}, "core.heartbeat")["queue"].name == "default"


def test_a_message_reaches_exactly_one_queue_in_redis() -> None:
    url = os.environ.get("REDIS_URL")
    if not url:
        pytest.skip("REDIS_URL is not set")
    client = redis.Redis.from_url(url)
    marker = uuid.uuid4().hex

    def lengths() -> dict[str, int]:
        return {name: cast(int, client.llen(name)) for name in QUEUES}

    def queued() -> list[bytes]:
        return cast(list[bytes], client.lrange("sync", 0, -1))

    try:
        before = lengths()
        app.send_task("integrations.sync.run", args=[marker])
        after = lengths()
        grown = {name for name in QUEUES if after[name] > before[name]}
        assert grown == {"sync"}
        assert marker.encode() in b"".join(queued())
    finally:
        for raw in queued():
            if marker.encode() in raw:
                client.lrem("sync", 0, raw.decode())
        client.close()
