"""Sync throughput against the provider's ceiling, with the sandbox enforcing HubSpot's limits.

Four connections (four organisations that connected the same HubSpot account, so they share
one rate-limit budget) run a full contact sync at once on two Celery worker processes. The
sandbox enforces 110 requests per rolling 10 seconds for the account and counts every 429 it
sends. The ceiling is what a perfect client could read in the same time: one full window at
once, then the steady rate, times 100 records per list request.

    python bench/sync_throughput.py [--contacts 5000] [--connections 4] [--workers 2]

Needs PostgreSQL and Redis (DATABASE_URL / REDIS_URL, defaults below); makes its own database.
Prints one table; nothing is asserted (goals live in the issue and bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.processes import free_port, spawn, stop, tail  # noqa: E402

PG = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/8")
DB = "switchboard_bench"


def sh(*args: str, env: dict[str, str] | None = None) -> None:
    subprocess.run(args, check=True, cwd=ROOT, env=env, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contacts", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--per-10s", type=int, default=110)
    args = parser.parse_args()

    work = Path(os.environ.get("BENCH_DIR", ROOT / "var" / "bench"))
    work.mkdir(parents=True, exist_ok=True)
    sh("psql", f"{PG}/postgres", "-qc", f"DROP DATABASE IF EXISTS {DB}")
    sh("psql", f"{PG}/postgres", "-qc", f"CREATE DATABASE {DB}")
    sh("redis-cli", "-u", REDIS, "flushdb")
    sandbox_port, tls_port = free_port(), free_port()
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    env = dict(os.environ) | {
        "DATABASE_URL": f"{PG}/{DB}",
        "REDIS_URL": REDIS,
        "SWITCHBOARD_VAR_DIR": str(work / "var"),
        "SWITCHBOARD_SANDBOX_URL": sandbox_url,
        "SWITCHBOARD_SANDBOX_CA_FILE": str(work / "ca.pem"),
        "DEBUG": "false",
        "SECRET_KEY": "bench-" + "x" * 50,
        "LOG_LEVEL": "WARNING",
    }
    os.environ.update(env)
    sh(sys.executable, "manage.py", "migrate", "--noinput", "-v0", env=env)

    with ExitStack() as stack:
        python = sys.executable
        sandbox = spawn(
            [
                python,
                "manage.py",
                "sandbox",
                "--port",
                str(sandbox_port),
                "--tls-port",
                str(tls_port),
                "--ca-file",
                str(work / "ca.pem"),
            ],
            env=env,
            log=work / "sandbox.log",
        )
        stack.callback(stop, sandbox, grace=10)
        http = httpx.Client(base_url=f"{sandbox_url}/_sandbox", timeout=60)
        for _ in range(100):
            try:
                if http.get("/health").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        http.post("/hubspot/limits", json={"per_10s": args.per_10s}).raise_for_status()
        seeded = http.post(
            "/hubspot/seed",
            json={"hub_id": 62515, "object_type": "contacts", "count": args.contacts},
        )
        seeded.raise_for_status()

        import django

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        django.setup()
        from django.db import transaction
        from django.utils import timezone

        from accounts.audit import Actor
        from accounts.models import Organization
        from integrations.models import SyncRun, SyncStatus
        from integrations.providers.base import AccountIdentity, TokenSet
        from integrations.services.connections import connection_upsert
        from integrations.sync.service import sync_request

        connections = []
        for n in range(args.connections):
            minted = http.post("/hubspot/tokens", json={"hub_id": 62515, "expires_in": 3600}).json()
            org = Organization.objects.create(name=f"Bench org {n}", slug=f"bench-{n}")
            with transaction.atomic():
                connections.append(
                    connection_upsert(
                        organization_id=org.pk,
                        provider_key="hubspot",
                        tokens=TokenSet(
                            access_token=minted["access_token"],
                            refresh_token=minted["refresh_token"],
                            expires_at=timezone.now() + timedelta(hours=1),
                        ),
                        identity=AccountIdentity(external_id="62515", display_name="bench"),
                        connected_by_id=None,
                        end_user=None,
                        actor=Actor(label="bench"),
                    )
                )
        workers = []
        for w in range(args.workers):
            log = work / f"worker{w}.log"
            proc = spawn(
                [
                    str(ROOT / ".venv/bin/celery"),
                    "-A",
                    "config",
                    "worker",
                    "-Q",
                    "sync",
                    "--pool",
                    "threads",
                    "--concurrency",
                    "4",
                    "--without-gossip",
                    "--without-mingle",
                    "--hostname",
                    f"bench{w}@%h",
                    "--loglevel",
                    "WARNING",
                ],
                env=env,
                log=log,
            )
            stack.callback(stop, proc, grace=20)
            workers.append((proc, log))
        time.sleep(6)  # workers up
        before = http.get("/counters").json()["total"]
        started = time.monotonic()
        runs = [
            sync_request(connection=c, object_type="contact", trigger="api")[0] for c in connections
        ]
        ids = [r.pk for r in runs]
        timeline: list[tuple[float, int]] = []  # (seconds since start, requests the sandbox saw)
        while True:
            seen = http.get("/counters").json()["total"] - before
            timeline.append((time.monotonic() - started, seen))
            statuses = set(SyncRun.objects.filter(pk__in=ids).values_list("status", flat=True))
            if not statuses & {SyncStatus.QUEUED, SyncStatus.RUNNING}:
                break
            for proc, log in workers:
                if proc.poll() is not None:
                    raise SystemExit(f"worker died{tail(log)}")
            time.sleep(0.25)
        elapsed = time.monotonic() - started
        after = http.get("/counters").json()
        done = SyncRun.objects.filter(pk__in=ids)
        records = sum(r.records_seen for r in done)
        requests = after["total"] - before
        # The counters requests include the control calls above: count only the CRM's.
        crm = sum(n for route, n in after["requests"].items() if "/crm/" in route)
        last = next(t for t, n in timeline if n >= timeline[-1][1])
        busiest = max(
            (n2 - n1 for t1, n1 in timeline for t2, n2 in timeline if 0 < t2 - t1 <= 10),
            default=0,
        )
        rate = args.per_10s / 10
        print(f"connections            {args.connections} (one HubSpot account, one budget)")
        print(f"workers                {args.workers} processes x 4 threads")
        print(f"statuses               {sorted({r.status for r in done})}")
        print(f"records read           {records}")
        print(f"CRM requests           {crm} (all requests: {requests})")
        print(f"elapsed                {elapsed:.1f} s (last request at {last:.1f} s)")
        print(f"records / s            {records / elapsed:.0f}")
        print(f"429s from the sandbox  {after['rate_limited']}")
        print(f"busiest 10 s           {busiest} requests (limit {args.per_10s})")
        print(
            f"share of the ceiling   {crm / (last * rate):.3f} "
            f"(requests until the last one / ({args.per_10s} per 10 s x that time))"
        )


if __name__ == "__main__":
    main()
