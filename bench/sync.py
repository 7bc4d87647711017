"""Sync throughput against the ceiling HubSpot's limits allow, with the sandbox enforcing them.

The sandbox enforces HubSpot's limits for real (``--per-10s`` calls per rolling ten seconds per
account, default 190, the Professional/Enterprise figure; five searches per second) and counts
every 429 it sends; the limiter is told the same limit (``RATE_LIMIT_OVERRIDES``: its policy
says 110, the figure for public apps, and would learn 190 from the first answer). The account
holds ``--contacts`` contacts (default 20,000). Each round connects a new organisation to that
account, runs its initial (full) contact sync, then gives ``--changed`` contacts (default
10,000, at most half of them) a new modification time in the sandbox and runs the incremental sync, on one Celery
worker process (4 threads) that a small sync of another account warmed up first. Per sync kind:

- records per second: records read / time from the sync's request to its end (both stamped by
  the database, so Celery's dispatch counts too);
- the ceiling, the issue's "requests per window x records per request" as a steady rate: list
  pages of 100 for the full sync, ``per_10s / 10 x 100``; searches of 200 for the incremental,
  five per second, ``min(per_10s / 10, 5) x 200`` records per second;
- the share of it, requests, and the sandbox's 429s.

Median of ``--rounds`` rounds (default 3), with the spread (lowest-highest). ``--connections N``
(shared-budget mode) connects N organisations to the account each round and runs their syncs
at once (``--workers`` processes): one budget, one ceiling. ``--profile PREFIX`` samples the
workers with py-spy during round 1 (collapsed stacks, ``PREFIX-full-<pid>.txt``...).

    python bench/sync.py [--contacts 20000] [--changed 10000] [--rounds 3] [--json PATH]

Makes its own database (switchboard_bench_sync) and Redis db (7). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: python bench/sync.py
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    BIN,
    WORK,
    Figure,
    Report,
    bench_env,
    django_setup,
    ensure_services,
    sandbox,
    spread,
    tail,
    worker,
)

if TYPE_CHECKING:
    import httpx

    from integrations.models import Connection

HUB_ID = 62515  # the sandbox's acme portal: the measured account
WARM_HUB_ID = 62516  # globex: the warm-up's, with a budget of its own
LIST_PAGE = 100  # records per list request (HubSpotReader.LIST_PAGE)
SEARCH_PAGE = 200  # records per search request (HubSpotReader.SEARCH_PAGE)
SEARCH_PER_SECOND = 5  # HubSpot's search limit, per account
# The records changed after a full sync are the incremental's whole work only if the overlap it
# reads again (SYNC_OVERLAP_SECONDS, 120 by default) does not reach back to the seeding.
OVERLAP_SECONDS = 1

Workers = Sequence[tuple[subprocess.Popen[bytes], Path]]


def sync_env(*, database: str, redis_db: int, work: Path, per_10s: int) -> dict[str, str]:
    """``bench_env`` plus the limit the limiter assumes (the sandbox's) and a short overlap."""
    env: dict[str, str] = bench_env(database=database, redis_db=redis_db, work=work)
    env["RATE_LIMIT_OVERRIDES"] = f"hubspot.ten_secondly_rolling={per_10s}"
    env["SYNC_OVERLAP_SECONDS"] = str(OVERLAP_SECONDS)
    return env


def prepare_sandbox(
    control: httpx.Client, *, per_10s: int, search_per_second: int, contacts: int
) -> None:
    """HubSpot's limits on the sandbox, and ``contacts`` contacts in the measured account."""
    control.post(
        "/hubspot/limits", json={"per_10s": per_10s, "search_per_second": search_per_second}
    ).raise_for_status()
    seed(control, contacts, hub_id=HUB_ID)


def seed(control: httpx.Client, count: int, *, hub_id: int) -> None:
    control.post(
        "/hubspot/seed", json={"hub_id": hub_id, "object_type": "contacts", "count": count}
    ).raise_for_status()


def touch(control: httpx.Client, count: int, *, start: int, hub_id: int = HUB_ID) -> None:
    """Give ``count`` contacts a new modification time (no API call, no 429 budget spent)."""
    control.post(
        "/hubspot/touch",
        json={"hub_id": hub_id, "object_type": "contacts", "count": count, "start": start},
    ).raise_for_status()


def connect(control: httpx.Client, n: int, *, hub_id: int = HUB_ID) -> Connection:
    """A new organisation (number ``n``) connected to the HubSpot account ``hub_id``."""
    from django.db import transaction
    from django.utils import timezone

    from accounts.audit import Actor
    from accounts.models import Organization
    from integrations.providers.base import AccountIdentity, TokenSet
    from integrations.services.connections import connection_upsert

    minted = control.post("/hubspot/tokens", json={"hub_id": hub_id, "expires_in": 6 * 3600})
    minted.raise_for_status()
    tokens = minted.json()
    org = Organization.objects.create(name=f"Bench org {n}", slug=f"bench-{hub_id}-{n}")
    with transaction.atomic():
        return connection_upsert(
            organization_id=org.pk,
            provider_key="hubspot",
            tokens=TokenSet(
                access_token=tokens["access_token"],
                refresh_token=tokens["refresh_token"],
                expires_at=timezone.now() + timedelta(hours=6),
            ),
            identity=AccountIdentity(external_id=str(hub_id), display_name="bench"),
            connected_by_id=None,
            end_user=None,
            actor=Actor(label="bench"),
        )


@dataclass(frozen=True)
class Measured:
    """One sync (or several at once, sharing the budget) as the database and sandbox saw it."""

    kind: str
    records: int
    requests: int
    rate_limited: int
    seconds: float  # from the first request to the last run's end
    statuses: tuple[str, ...]

    @property
    def per_second(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


def counters(control: httpx.Client, hub_id: int = HUB_ID) -> tuple[int, int]:
    """(CRM calls of the account, 429s) the sandbox counted so far."""
    found = control.get("/counters").json()
    calls = int(found["requests_by_account"].get(f"hubspot:{hub_id}", 0))
    return calls, int(found["rate_limited"])


def run_syncs(
    control: httpx.Client,
    connections: Sequence[Connection],
    workers: Workers,
    *,
    timeout: float = 900,
    on_poll: Callable[[], None] | None = None,
) -> Measured:
    """Request a contact sync of each connection at once and wait until all have ended
    (``on_poll`` is called every 0.1 s meanwhile)."""
    from integrations.models import SyncRun, SyncStatus
    from integrations.sync.service import sync_request

    hub_id = int(connections[0].external_account_id)
    calls, refused = counters(control, hub_id)
    runs = [
        sync_request(connection=c, object_type="contact", trigger="api")[0] for c in connections
    ]
    ids = [r.pk for r in runs]
    deadline = time.monotonic() + timeout
    while True:
        if on_poll is not None:
            on_poll()
        active = SyncRun.objects.filter(
            pk__in=ids, status__in=(SyncStatus.QUEUED, SyncStatus.RUNNING)
        )
        if not active.exists():
            break
        for proc, log in workers:
            if proc.poll() is not None:
                raise SystemExit(f"a worker died{tail(log)}")
        if time.monotonic() > deadline:
            raise SystemExit(f"the syncs did not end within {timeout:.0f} s")
        time.sleep(0.1)
    calls_after, refused_after = counters(control, hub_id)
    done = list(SyncRun.objects.filter(pk__in=ids))
    began = min(r.created_at for r in done)
    ended = max(r.finished_at or r.created_at for r in done)
    return Measured(
        kind=str(done[0].kind),
        records=sum(r.records_seen for r in done),
        requests=calls_after - calls,
        rate_limited=refused_after - refused,
        seconds=(ended - began).total_seconds(),
        statuses=tuple(sorted({str(r.status) for r in done})),
    )


def warm_up(control: httpx.Client, workers: Workers, *, contacts: int = 1_000) -> None:
    """A full and an incremental sync of another account (a budget of its own), so that
    what a worker does once (imports, connections) is not in the measured figures."""
    seed(control, contacts, hub_id=WARM_HUB_ID)
    time.sleep(OVERLAP_SECONDS + 0.1)
    connection = connect(control, 0, hub_id=WARM_HUB_ID)
    run_syncs(control, [connection], workers)
    touch(control, contacts // 2, start=0, hub_id=WARM_HUB_ID)
    time.sleep(OVERLAP_SECONDS + 0.1)
    run_syncs(control, [connection], workers)


@contextmanager
def profiled(pids: Sequence[int], out: Path | None) -> Iterator[None]:
    """py-spy sampling the processes ``pids`` meanwhile (collapsed stacks, ``out-<pid>.txt``)."""
    if out is None:
        yield
        return
    record = [str(BIN / "py-spy"), "record", "--format", "raw", "--rate", "200"]
    spies = [
        subprocess.Popen(
            [*record, "--pid", str(pid), "--output", f"{out}-{pid}.txt"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid in pids
    ]
    try:
        yield
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)
        for spy in spies:
            spy.wait(timeout=60)


def ceilings(per_10s: int, search_per_second: int) -> dict[str, float]:
    """Records per second the limits allow, per sync kind (steady rates)."""
    per_second = per_10s / 10
    return {
        "full": per_second * LIST_PAGE,
        "incremental": min(per_second, search_per_second) * SEARCH_PAGE,
    }


def shown(m: Measured, ceiling: float) -> str:
    return (
        f"{m.kind:<11} {m.records:>7} records {m.requests:>4} requests {m.seconds:6.2f} s "
        f"{m.per_second:6.0f}/s {m.per_second / ceiling:.3f} of the ceiling "
        f"{m.rate_limited} 429s {list(m.statuses)}"
    )


def report_for(
    args: argparse.Namespace, results: dict[str, list[Measured]], ceiling: dict[str, float]
) -> Report:
    report = Report(benchmark="sync", command=" ".join(["bench/sync.py", *sys.argv[1:]]))
    shared = f", {args.connections} connections sharing it" if args.connections > 1 else ""
    for kind, measured in results.items():
        top = ceiling[kind]
        if kind == "full":
            limit = f"{args.per_10s} req / 10 s x {LIST_PAGE}"
        else:
            searches = min(args.per_10s / 10, args.search_per_second)
            limit = f"{searches:g} searches / s x {SEARCH_PAGE}"
        rate = spread([m.per_second for m in measured])
        share = spread([m.per_second / top for m in measured])
        refused = sum(m.rate_limited for m in measured)
        requests = [float(m.requests) for m in measured]
        report.add(
            Figure(
                f"{kind} sync records/s",
                rate[0],
                "records/s",
                rate[1],
                rate[2],
                reference=f"ceiling {top:,.0f}/s ({limit}{shared})",
            )
        )
        report.add(
            Figure(
                f"{kind} sync share of the ceiling",
                share[0],
                "",
                share[1],
                share[2],
                reference=f"ceiling {top:,.0f} records/s",
                goal=">= 0.95, zero 429s",
                met=share[0] >= 0.95 and refused == 0,
            )
        )
        report.add(
            Figure(f"{kind} sync 429s", float(refused), "(all rounds)", goal="0", met=refused == 0)
        )
        report.add(
            Figure(
                f"{kind} sync requests",
                statistics.median(requests),
                "requests",
                min(requests),
                max(requests),
                reference=f"{statistics.median(m.records for m in measured):,.0f} records",
            )
        )
        failed = sorted({s for m in measured for s in m.statuses if s != "succeeded"})
        if failed:
            report.notes.append(f"{kind}: runs ended {failed}")
    report.notes.append(
        f"{args.contacts:,} contacts, {args.changed:,} changed for each incremental; "
        f"{args.rounds} rounds, median (lowest-highest); sandbox and limiter at {args.per_10s} "
        f"per 10 s and {args.search_per_second} searches per second; "
        f"SYNC_OVERLAP_SECONDS={OVERLAP_SECONDS}"
    )
    report.notes.append(
        "the ceilings are steady rates: a finite sync can beat one by the burst its first window "
        "allows (the incremental's first second: 5 searches at once)"
    )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=20_000)
    parser.add_argument(
        "--changed", type=int, help="for each incremental (default 10,000, at most half of all)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-10s", type=int, default=190)
    parser.add_argument("--search-per-second", type=int, default=SEARCH_PER_SECOND)
    parser.add_argument("--connections", type=int, default=1, help="sharing one budget")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (4 threads)")
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--profile", metavar="PREFIX", type=Path, help="py-spy round 1")
    args = parser.parse_args()
    if args.changed is None:
        args.changed = min(10_000, args.contacts // 2)
    if not 0 < args.changed <= args.contacts:
        parser.error("--changed must be between 1 and --contacts")

    ensure_services()
    work = WORK / "sync"
    env = sync_env(database="switchboard_bench_sync", redis_db=7, work=work, per_10s=args.per_10s)
    ceiling = ceilings(args.per_10s, args.search_per_second)
    results: dict[str, list[Measured]] = {"full": [], "incremental": []}
    with ExitStack() as stack:
        sb = stack.enter_context(sandbox(env, work))
        prepare_sandbox(
            sb.control,
            per_10s=args.per_10s,
            search_per_second=args.search_per_second,
            contacts=args.contacts,
        )
        django_setup(env)
        workers = []
        for w in range(args.workers):
            name = f"benchsync{w}"
            proc = stack.enter_context(worker(env, work, queues="sync", name=name))
            workers.append((proc, work / f"{name}.log"))
        warm_up(sb.control, workers)  # also takes the seeding past every incremental's overlap
        pids = [proc.pid for proc, _ in workers]
        for r in range(args.rounds):
            connections = [
                connect(sb.control, r * args.connections + c + 1) for c in range(args.connections)
            ]
            spy = args.profile if r == 0 else None
            with profiled(pids, spy and spy.with_name(f"{spy.name}-full")):
                full = run_syncs(sb.control, connections, workers)
            start = (r * args.changed) % (args.contacts - args.changed + 1)
            touch(sb.control, args.changed, start=start)
            time.sleep(OVERLAP_SECONDS + 0.1)  # the next full sync starts past these changes
            with profiled(pids, spy and spy.with_name(f"{spy.name}-incremental")):
                incremental = run_syncs(sb.control, connections, workers)
            for m in (full, incremental):
                results[m.kind].append(m)
                print(f"round {r + 1} {shown(m, ceiling[m.kind])}", flush=True)

    report = report_for(args, results, ceiling)
    report.print()
    report.write(args.json)


if __name__ == "__main__":
    main()
