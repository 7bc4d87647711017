"""The mirror's upsert rules, on both of its paths (PostgreSQL's one statement per batch, and the
ORM's for other databases): created, unchanged, updated, never back in time, deleted and
restored, the newest of a batch's duplicates, and the counts of each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from accounts.models import Organization
from integrations.models import Connection, CrmRecord
from integrations.providers.unified import Contact
from integrations.sync import mirror
from integrations.sync.mirror import MirrorCounts, mirror_upsert

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["one statement", "orm"], autouse=True)
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "orm":
        monkeypatch.setattr(mirror, "_in_one_statement", lambda: False)
    return str(request.param)


@pytest.fixture
def connection(org: Organization) -> Connection:
    return Connection.objects.create(
        organization=org, provider="hubspot", external_account_id="62515", display_name="acme"
    )


def contact(record_id: str, *, at: datetime, email: str, archived: bool = False) -> Contact:
    return Contact(
        id=record_id,
        created_at=T0,
        updated_at=at,
        archived=archived,
        email=email,
        properties={"email": email, "lastmodifieddate": at.isoformat(), "n": None},
    )


def upsert(connection: Connection, *records: Contact, now: datetime | None = None) -> MirrorCounts:
    return mirror_upsert(
        connection_id=connection.pk, object_type="contact", records=list(records), now=now
    )


def row(connection: Connection, record_id: str) -> CrmRecord:
    return CrmRecord.objects.get(
        connection=connection, object_type="contact", external_id=record_id
    )


def counts(found: MirrorCounts) -> tuple[int, int, int, int]:
    return found.seen, found.created, found.updated, found.unchanged


def test_upserts_create_update_and_leave_unchanged(connection: Connection) -> None:
    t1 = T0 + timedelta(minutes=1)
    first = upsert(
        connection, contact("1", at=T0, email="a@x.test"), contact("2", at=T0, email="b@x.test")
    )
    assert counts(first) == (2, 2, 0, 0)
    one = row(connection, "1")
    assert one.fields["email"] == "a@x.test"
    assert one.raw == {"email": "a@x.test", "lastmodifieddate": T0.isoformat(), "n": None}
    assert (one.remote_created_at, one.remote_updated_at, one.deleted_at) == (T0, T0, None)
    synced = one.synced_at
    # The same again: nothing written.
    again = upsert(connection, contact("1", at=T0, email="a@x.test"))
    assert counts(again) == (1, 0, 0, 1)
    assert row(connection, "1").synced_at == synced
    # Changed: written, with the new modification time.
    changed = upsert(
        connection, contact("1", at=t1, email="new@x.test"), contact("3", at=t1, email="c@x.test")
    )
    assert counts(changed) == (2, 1, 1, 0)
    one = row(connection, "1")
    assert (one.fields["email"], one.remote_updated_at, one.created_at) == (
        "new@x.test",
        t1,
        synced,
    )
    assert one.synced_at > synced
    # Older than the mirror's copy: skipped, however different.
    older = upsert(connection, contact("1", at=T0, email="old@x.test"))
    assert counts(older) == (1, 0, 0, 1)
    assert row(connection, "1").fields["email"] == "new@x.test"
    # The same modification time with other values is written (a provider fixing a value).
    same_time = upsert(connection, contact("1", at=t1, email="fixed@x.test"))
    assert counts(same_time) == (1, 0, 1, 0)


def test_archived_records_are_deleted_and_come_back(connection: Connection) -> None:
    t1, t2 = T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)
    deleted_at = T0 + timedelta(hours=1)
    upsert(connection, contact("1", at=T0, email="a@x.test"))
    gone = upsert(connection, contact("1", at=t1, email="a@x.test", archived=True), now=deleted_at)
    assert counts(gone) == (1, 0, 1, 0)
    assert row(connection, "1").deleted_at == deleted_at
    # Reported archived again later: still deleted since the first time.
    later = T0 + timedelta(hours=2)
    assert counts(
        upsert(connection, contact("1", at=t1, email="a@x.test", archived=True), now=later)
    ) == (
        1,
        0,
        0,
        1,
    )
    assert row(connection, "1").deleted_at == deleted_at
    # Seen live again: restored.
    assert counts(upsert(connection, contact("1", at=t2, email="a@x.test"))) == (1, 0, 1, 0)
    assert row(connection, "1").deleted_at is None
    # A record first seen archived is stored deleted.
    assert counts(
        upsert(connection, contact("9", at=T0, email="z@x.test", archived=True), now=later)
    ) == (
        1,
        1,
        0,
        0,
    )
    assert row(connection, "9").deleted_at == later


def test_the_newest_of_a_batchs_duplicates_wins(connection: Connection) -> None:
    t1 = T0 + timedelta(minutes=1)
    found = upsert(
        connection,
        contact("1", at=t1, email="newest@x.test"),
        contact("1", at=T0, email="older@x.test"),
    )
    assert counts(found) == (2, 1, 0, 0)
    assert row(connection, "1").fields["email"] == "newest@x.test"
    assert CrmRecord.objects.filter(connection=connection).count() == 1
