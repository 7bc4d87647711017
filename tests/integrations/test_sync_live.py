"""The sync engine through real Celery workers on Redis and PostgreSQL, against a sandbox that
injects faults: a 5,000-contact sync survives 20% faults and a SIGKILLed worker, and ends
with exactly 5,000 mirror rows."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from accounts.models import Organization
from integrations.models import CrmRecord, SyncRun, SyncStatus
from integrations.sync.service import sync_request, sync_watchdog
from tests.integrations.test_tokens import make_connection
from tests.workers import celery_worker

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

CONTACTS = 5_000
FAULTS = {
    "fault_rate": 0.2,
    "fault_mix": {"fail": 4, "rate_limit": 2, "timeout": 1, "slow": 3},
    "slow_ms": 400,
    "timeout_seconds": 30,
    "seed": 20261121,
}
# Short timeouts and leases so the faults and the crash are dealt with in seconds.
WORKER_ENV = {
    "PROVIDER_TIMEOUT_SECONDS": "2",
    "SYNC_LEASE_SECONDS": "4",
    "SYNC_SLICE_SECONDS": "3",
}


def wait_for(what: str, check: Any, *, timeout: float, worker: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if worker is not None:
            assert worker.alive(), f"worker died{worker.tail()}"
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s" + (
            worker.tail() if worker else ""
        )
        time.sleep(0.25)


def test_a_faulty_sync_killed_midway_ends_with_every_record_once(
    sandbox: Any, sandbox_settings: Any, org: Organization, tmp_path: Path, settings: Any
) -> None:
    settings.SYNC_LEASE_SECONDS = 4
    seeded = sandbox.hubspot_seed(hub_id=62515, object_type="contacts", count=CONTACTS)
    assert seeded["created"] == CONTACTS
    connection = make_connection(sandbox, org)
    sandbox.faults(**FAULTS)

    run, _ = sync_request(connection=connection, object_type="contact", trigger="api")
    with celery_worker(tmp_path, queues="sync", env=WORKER_ENV, name="first") as first:
        wait_for(
            "a third of the contacts mirrored",
            lambda: CrmRecord.objects.filter(connection=connection).count() >= CONTACTS // 3,
            timeout=120,
            worker=first,
        )
        first.kill()  # mid-sync: a page may be in flight, the lease is held
    run.refresh_from_db()
    assert run.status == SyncStatus.RUNNING
    mirrored_at_kill = CrmRecord.objects.filter(connection=connection).count()
    assert mirrored_at_kill < CONTACTS

    with celery_worker(tmp_path, queues="sync", env=WORKER_ENV, name="second") as second:
        time.sleep(4.5)  # the dead worker's lease goes stale
        assert sync_watchdog() >= 1  # what beat does every minute
        wait_for(
            "the sync to finish",
            lambda: (
                SyncRun.objects.get(pk=run.pk).status not in (SyncStatus.QUEUED, SyncStatus.RUNNING)
            ),
            timeout=240,
            worker=second,
        )
    run.refresh_from_db()
    assert run.status == SyncStatus.SUCCEEDED, f"{run.error_code}: {run.error_message}"
    rows = CrmRecord.objects.filter(connection=connection, object_type="contact")
    assert rows.count() == CONTACTS
    assert rows.filter(deleted_at__isnull=True).count() == CONTACTS
    assert rows.values("external_id").distinct().count() == CONTACTS
    # Nothing counted twice: the killed page rolled back with its cursor.
    assert run.records_created == CONTACTS
    counters = sandbox.counters()
    assert counters["faults_injected"] > 0
