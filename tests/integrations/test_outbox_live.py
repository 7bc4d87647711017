"""The write outbox with real processes: uvicorn finishing a write after its 202, Celery workers
on Redis retrying through injected faults, and a worker SIGKILLed in the middle of a batch.

Each test has a queue of its own (``OUTBOX_QUEUE``), so messages left in Redis by one test are
never consumed by another.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgiref.sync import async_to_sync

from accounts.models import Organization
from config.celery import app
from integrations.models import Connection, CrmWrite, WriteStatus
from integrations.outbox.service import write_batch_submit
from tests.conftest import TEST_ACTOR, Api, LiveServer, assert_envelope_ok, new_key
from tests.integrations.test_tokens import make_connection
from tests.workers import Worker, celery_worker, live_queue

pytestmark = pytest.mark.live

WRITE_ID = "switchboard_write_id"
TERMINAL = (WriteStatus.SUCCEEDED, WriteStatus.FAILED, WriteStatus.DEAD)


@pytest.fixture
def queue() -> Iterator[str]:
    with live_queue("test-outbox", "the live outbox tests") as name:
        yield name


def outbox_env(queue: str, **extra: str) -> dict[str, str]:
    """The outbox's settings for a child process (worker or server), as strings."""
    return {
        "OUTBOX_QUEUE": queue,
        "HUBSPOT_WRITE_ID_PROPERTY": WRITE_ID,
        "PROVIDER_TIMEOUT_SECONDS": "1",
        "OUTBOX_BACKOFF_BASE_SECONDS": "0.2",
        "OUTBOX_BACKOFF_MAX_SECONDS": "2",
        "OUTBOX_LEASE_SECONDS": "6",
        "OUTBOX_SWEEP_SECONDS": "2",
    } | extra


@pytest.fixture
def live_outbox(sandbox_settings: Any, queue: str) -> Any:
    """This process's settings matching ``outbox_env`` (it submits writes and sweeps)."""
    s = sandbox_settings
    reads = dict.fromkeys(("contact_properties", "company_properties", "deal_properties"), WRITE_ID)
    s.PROVIDERS = dict(s.PROVIDERS) | {
        "hubspot": dict(s.PROVIDERS["hubspot"]) | {"write_id_property": WRITE_ID} | reads
    }
    s.OUTBOX_QUEUE = queue
    s.PROVIDER_TIMEOUT_SECONDS = 1.0
    s.OUTBOX_BACKOFF_BASE_SECONDS = 0.2
    s.OUTBOX_BACKOFF_MAX_SECONDS = 2.0
    s.OUTBOX_LEASE_SECONDS = 6.0
    s.OUTBOX_SWEEP_SECONDS = 2.0
    return s


def settle(
    ids: list[Any], queue: str, workers: list[Worker], *, timeout: float, sweep_every: float = 2.0
) -> dict[str, int]:
    """Until every write is done, sending the beat's sweep task to the worker now and then."""
    deadline = time.monotonic() + timeout
    next_sweep = 0.0
    while True:
        counts: dict[str, int] = {}
        for status in CrmWrite.objects.filter(pk__in=ids).values_list("status", flat=True):
            counts[status] = counts.get(status, 0) + 1
        if sum(counts.get(s, 0) for s in TERMINAL) == len(ids):
            return counts
        for worker in workers:
            assert worker.alive(), f"the worker died{worker.tail()}"
        assert time.monotonic() < deadline, f"not settled in {timeout} s: {counts}" + "".join(
            w.tail() for w in workers
        )
        if time.monotonic() >= next_sweep:
            app.send_task("integrations.outbox.sweep", queue=queue)
            next_sweep = time.monotonic() + sweep_every
        time.sleep(0.25)


# --- the 202 path on a real server ------------------------------------------------------------


@pytest.fixture
def asgi_env(sandbox: Any, queue: str) -> dict[str, str]:
    return {
        "SWITCHBOARD_SANDBOX_URL": sandbox.url,
        "SWITCHBOARD_SANDBOX_CA_FILE": sandbox.ca_file,
        **outbox_env(queue, OUTBOX_INLINE_SECONDS="0.3", PROVIDER_TIMEOUT_SECONDS="5"),
    }


def test_a_slow_write_answers_202_and_finishes_on_the_server(
    sandbox: Any, live_outbox: Any, asgi_server: LiveServer, org: Organization
) -> None:
    connection = make_connection(sandbox, org)
    headers = {"Authorization": f"Bearer {new_key(org)}", "Idempotency-Key": "slow-1"}
    sandbox.faults(latency_ms=2500)
    with httpx.Client(base_url=asgi_server.url, timeout=10) as http:
        warm = http.get(f"/api/v1/connections/{connection.pk}", headers=headers)
        assert warm.status_code == 200, warm.text  # the server's first request warms it up
        started = time.monotonic()
        response = http.post(
            f"/api/v1/connections/{connection.pk}/contacts",
            json={"email": "slow@x.test"},
            headers=headers,
        )
        assert time.monotonic() - started < 2.0, "the answer waited for the provider"
        assert response.status_code == 202, response.text + asgi_server.tail()
        body = response.json()["data"]
        assert response.headers["location"] == body["status_url"]
        assert body["write"]["status"] == "sending"
        # The server keeps going after its answer: the write succeeds without any worker.
        deadline = time.monotonic() + 10
        while True:
            status = http.get(body["status_url"], headers=headers).json()["data"]
            if status["status"] != "sending":
                break
            assert time.monotonic() < deadline, asgi_server.tail()
            time.sleep(0.1)
        assert status["status"] == "succeeded", status
        assert status["result"]["email"] == "slow@x.test"
        # The key now answers with the record itself.
        again = http.post(
            f"/api/v1/connections/{connection.pk}/contacts",
            json={"email": "slow@x.test"},
            headers=headers,
        )
        assert again.status_code == 201, again.text
        assert again.json()["data"]["id"] == status["result_id"]
    assert sandbox.counters()["requests"]["POST /crm/v3/objects/contacts"] == 1


# --- real workers ---------------------------------------------------------------------------------


def test_a_worker_retries_a_503_from_its_queue(
    sandbox: Any, live_outbox: Any, queue: str, transactional_db: None, tmp_path: Path
) -> None:
    org = Organization.objects.create(name="Live", slug=f"live-{uuid.uuid4().hex[:8]}")
    connection = make_connection(sandbox, org)
    api = Api(key=new_key(org))
    sandbox.faults(fail_next=2, fail_status=503)
    with celery_worker(tmp_path, queues=queue, env=outbox_env(queue)) as worker:
        response = api.post(f"/api/v1/connections/{connection.pk}/contacts", {"email": "w@x.test"})
        write_id = assert_envelope_ok(response, 202)["write"]["id"]
        # No sweep: the retry message the outbox scheduled is enough.
        deadline = time.monotonic() + 20
        while CrmWrite.objects.get(pk=write_id).status != WriteStatus.SUCCEEDED:
            assert worker.alive(), worker.tail()
            assert time.monotonic() < deadline, worker.tail()
            time.sleep(0.1)
    write = CrmWrite.objects.get(pk=write_id)
    assert write.attempts == 3
    assert sandbox.counters()["requests"]["POST /crm/v3/objects/contacts"] == 3
    assert sandbox.hubspot_stats(object_type="contacts")["live"] == 1


def test_500_writes_through_20_percent_faults_make_exactly_500_records(
    sandbox: Any, live_outbox: Any, queue: str, transactional_db: None, tmp_path: Path
) -> None:
    """The acceptance test: 250 companies written one API call each (with keys) and 250 deals in
    five batch requests, while a fifth of all CRM calls (searches included) fail, time out before
    or after committing, are rate limited or slow. Everything must end written exactly once."""
    org = Organization.objects.create(name="Faulty", slug=f"faulty-{uuid.uuid4().hex[:8]}")
    connection = make_connection(sandbox, org)
    api = Api(key=new_key(org))
    sandbox.limits(per_10s=1000)  # the injected faults are the subject here, not the budget
    sandbox.faults(
        fault_rate=0.2,
        fault_mix={"fail": 2, "timeout": 1, "timeout_after": 1, "rate_limit": 1, "slow": 1},
        seed=20240611,
        timeout_seconds=3,
        slow_ms=300,
        burst=1,
    )
    base = f"/api/v1/connections/{connection.pk}"
    with celery_worker(tmp_path, queues=queue, concurrency=4, env=outbox_env(queue)) as worker:
        for i in range(250):
            response = api.post(
                f"{base}/companies",
                {"name": f"Company {i}", "domain": f"company{i}.test"},
                headers={"Idempotency-Key": f"company-{i}"},
            )
            assert response.status_code in (201, 202), response.content
        for b in range(5):
            items = [{"name": f"Deal {b * 50 + j}"} for j in range(50)]
            response = api.post(
                f"{base}/deals/batch", {"create": items}, headers={"Idempotency-Key": f"deals-{b}"}
            )
            assert response.status_code in (200, 202), response.content
        ids = list(CrmWrite.objects.filter(connection=connection).values_list("pk", flat=True))
        assert len(ids) == 500
        counts = settle(ids, queue, [worker], timeout=240)
    faults = sandbox.counters()
    sandbox.faults()  # stats and checks below without faults
    assert counts == {"succeeded": 500}, counts
    assert faults["faults_injected"] >= 50, faults["faults_by_kind"]
    assert faults["faults_by_kind"]["timeout_after"] >= 1
    for object_type, key in (("companies", "domain"), ("deals", "dealname")):
        stats = sandbox.hubspot_stats(object_type=object_type)
        assert stats["live"] == 250, (object_type, stats)
        assert stats["duplicates"] == {key: 0, WRITE_ID: 0}, (object_type, stats)
    writes = CrmWrite.objects.filter(connection=connection)
    assert len(set(writes.values_list("result_id", flat=True))) == 500
    retried = writes.filter(attempts__gt=1).count()
    found = writes.filter(last_error__contains="found at the provider").count()
    print(
        f"faults {faults['faults_by_kind']}, retried {retried}, found {found}, "
        f"calls {faults['total']}"
    )
    assert retried >= 20, retried
    assert found >= 1, "no uncertain create was ever reconciled: the faults missed the point"


def test_a_worker_killed_mid_batch_loses_and_duplicates_nothing(
    sandbox: Any, live_outbox: Any, queue: str, transactional_db: None, tmp_path: Path
) -> None:
    org = Organization.objects.create(name="Killed", slug=f"killed-{uuid.uuid4().hex[:8]}")
    connection: Connection = make_connection(sandbox, org)
    # Every CRM call takes 1.5 s, so the worker is surely in the middle of one when it dies;
    # the provider timeout is longer than that (the calls would have succeeded).
    sandbox.faults(latency_ms=1500)
    env = outbox_env(queue, PROVIDER_TIMEOUT_SECONDS="5", OUTBOX_LEASE_SECONDS="8")
    live_outbox.OUTBOX_LEASE_SECONDS = 8.0
    outcomes = async_to_sync(write_batch_submit)(
        connection=connection,
        operation="create",
        object_type="deal",
        items=[(None, {"name": f"Deal {n}"}) for n in range(300)],
        idempotency_key="kill-batch",
        actor=TEST_ACTOR,
        inline=False,
    )
    ids = [o.write.pk for o in outcomes]
    writes = CrmWrite.objects.filter(pk__in=ids)
    with celery_worker(tmp_path, queues=queue, env=env, name="doomed") as doomed:
        deadline = time.monotonic() + 30
        while not writes.filter(status=WriteStatus.SENDING).exists():
            assert doomed.alive(), doomed.tail()
            assert time.monotonic() < deadline, doomed.tail()
            time.sleep(0.05)
        time.sleep(0.5)  # the batch call is on the wire
        doomed.kill()
    at_kill = {s: writes.filter(status=s).count() for s in WriteStatus.values}
    assert at_kill["sending"] >= 1, at_kill
    assert at_kill["pending"] >= 1, at_kill
    time.sleep(2.0)  # the sandbox finishes (and commits) the calls the dead worker made
    sandbox.faults()
    with celery_worker(tmp_path, queues=queue, env=env, name="heir") as heir:
        counts = settle(ids, queue, [heir], timeout=90)
    assert counts == {"succeeded": 300}, counts
    stats = sandbox.hubspot_stats(object_type="deals")
    assert stats["live"] == 300, stats
    assert stats["duplicates"] == {"dealname": 0, WRITE_ID: 0}, stats
    assert len(set(writes.values_list("result_id", flat=True))) == 300
    # The writes in flight at the kill came back through an expired lease and were found at
    # the provider (the dead worker's call had gone through), not sent again.
    found = writes.filter(last_error__contains="found at the provider").count()
    assert found >= 1, at_kill
