"""API throughput and latency: Switchboard against a bare FastAPI app and a DRF view.

All three serve the same two pages (``GET /api/v1/runs`` and
``GET /api/v1/connections/{id}/records``, 50 rows each) from the same PostgreSQL tables with the
same JSON (checked before measuring), authenticated with the same API key:

- Switchboard: ``uvicorn config.asgi:application --workers N`` (as the Procfile runs it);
- FastAPI + SQLAlchemy (async): ``bench/refs/fastapi_app.py`` under the same uvicorn;
- DRF: ``bench/refs/drf_urls.py`` under gunicorn (WSGI), as DRF projects are deployed.

Closed loop (wrk, fixed concurrency) for throughput, p50 and p99, with 1 and 2 worker processes;
the servers take turns, one load at a time, for several rounds, and each round's ratio is taken
between figures measured minutes apart at most. Then, Switchboard alone: one connection
(unloaded p50/p99), an open loop at half its measured capacity (hey at a fixed rate), and
``POST /api/v1/workflows/{key}/runs`` (enqueue) p99.

    python -m bench.api [--rounds 3] [--seconds 6] [--connections 32] [--json PATH]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shlex
import shutil
import statistics
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    BIN,
    ROOT,
    WORK,
    Figure,
    Report,
    bench_env,
    django_setup,
    ensure_services,
    free_port,
    spawn,
    spread,
    stop,
    wait_http,
)

LUA = str(ROOT / "bench" / "wrk_report.lua")
NAMES = ("switchboard", "fastapi", "drf")
BEFORE = "before"  # --baseline: Switchboard as of an earlier checkout, for before/after


@dataclass(frozen=True)
class Seeded:
    key: str
    connection_id: str
    workflow: str


def seed(*, runs: int, records: int) -> Seeded:
    """One organisation with an API key, a HubSpot connection, ``runs`` finished workflow runs
    and ``records`` mirrored contacts (plus a second organisation's rows to filter out)."""
    from datetime import timedelta

    from django.db import transaction
    from django.utils import timezone

    from accounts.audit import Actor
    from accounts.keys import generate_key
    from accounts.models import ApiKey, Organization
    from integrations.models import CrmRecord
    from integrations.providers.base import AccountIdentity, TokenSet
    from integrations.services.connections import connection_upsert
    from workflows.models import RunStatus, WorkflowRun
    from workflows.services import workflow_ensure_defaults

    now = timezone.now()
    made: Seeded | None = None
    for n in range(2):
        org = Organization.objects.create(name=f"Bench {n}", slug=f"bench-{n}")
        new = generate_key()
        ApiKey.objects.create(
            organization=org, name="bench", prefix=new.prefix, key_hash=new.key_hash
        )
        with transaction.atomic():
            connection = connection_upsert(
                organization_id=org.pk,
                provider_key="hubspot",
                tokens=TokenSet(
                    access_token=f"bench-access-{n}",
                    refresh_token=f"bench-refresh-{n}",
                    expires_at=now + timedelta(hours=1),
                ),
                identity=AccountIdentity(external_id=str(62000 + n), display_name="bench"),
                connected_by_id=None,
                end_user=None,
                actor=Actor(label="bench"),
            )
        workflows = {w.key: w for w in workflow_ensure_defaults(org)}
        workflow = workflows["lead_qualification"]
        WorkflowRun.objects.bulk_create(
            WorkflowRun(
                organization=org,
                workflow=workflow,
                connection=connection,
                graph=workflow.graph,
                thread_id=f"bench-{n}-{i}",
                status=RunStatus.SUCCEEDED if i % 5 else RunStatus.FAILED,
                trigger="api",
                requested_by="api_key:bench",
                input={"contact_ids": [str(1000 + i)], "note": "benchmark"},
                config=workflow.config,
                output={"qualified": i % 3, "written": [f"w{i}"]} if i % 5 else None,
                error_code="" if i % 5 else "provider_unavailable",
                error_message="" if i % 5 else "HubSpot answered 503.",
                created_at=now - timedelta(minutes=i),
                started_at=now - timedelta(minutes=i),
                finished_at=now - timedelta(minutes=i) + timedelta(seconds=2),
            )
            for i in range(runs)
        )
        CrmRecord.objects.bulk_create(
            CrmRecord(
                connection=connection,
                object_type="contact",
                external_id=str(5000 + i),
                fields={
                    "email": f"person{i}@example.com",
                    "first_name": f"First{i}",
                    "last_name": f"Last{i}",
                    "phone": f"+1 555 01{i:04d}",
                    "company": f"Company {i % 40}",
                    "lifecycle_stage": "lead",
                },
                raw={
                    "email": f"person{i}@example.com",
                    "firstname": f"First{i}",
                    "lastname": f"Last{i}",
                    "phone": f"+1 555 01{i:04d}",
                    "company": f"Company {i % 40}",
                    "lifecyclestage": "lead",
                    "hs_object_id": str(5000 + i),
                    "createdate": (now - timedelta(days=i)).isoformat(),
                    "lastmodifieddate": now.isoformat(),
                },
                remote_created_at=now - timedelta(days=i),
                remote_updated_at=now,
            )
            for i in range(records)
        )
        if made is None:
            made = Seeded(key=new.secret, connection_id=str(connection.pk), workflow=workflow.key)
    assert made is not None
    return made


def command(name: str, port: int, workers: int, baseline: str | None = None) -> list[str]:
    bind = ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    quiet = ["--lifespan", "off", "--no-access-log", "--log-level", "warning"]
    if name == "switchboard":
        return [str(BIN / "uvicorn"), "config.asgi:application", *bind, *quiet]
    if name == BEFORE and baseline:  # from its own directory, so its own modules load
        uvicorn = shlex.join([str(BIN / "uvicorn"), "config.asgi:application", *bind, *quiet])
        return ["sh", "-c", f"cd {shlex.quote(baseline)} && exec {uvicorn}"]
    if name == "fastapi":
        return [str(BIN / "uvicorn"), "bench.refs.fastapi_app:app", *bind, *quiet]
    return [
        str(BIN / "gunicorn"),
        "bench.refs.drf_wsgi:application",
        "--workers",
        str(workers),
        "--bind",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
    ]


@contextmanager
def servers(
    env: dict[str, str], work: Path, workers: int, names: tuple[str, ...], baseline: str | None
) -> Iterator[dict[str, str]]:
    """The servers with ``workers`` processes each; their base URLs by name."""
    with ExitStack() as stack:
        urls = {}
        for name in names:
            port = free_port()
            proc = spawn(
                command(name, port, workers, baseline),
                env=env,
                log=work / f"{name}-{workers}.log",
            )
            stack.callback(stop, proc, grace=10)
            urls[name] = f"http://127.0.0.1:{port}"
            wait_http(f"{urls[name]}/api/v1/runs", proc=proc)
        yield urls


def wrk(
    url: str, key: str, *, seconds: float, connections: int, body: str | None = None
) -> dict[str, float]:
    """One closed-loop run: requests/s, p50/p99 in ms; any error or non-2xx answer aborts."""
    done = subprocess.run(
        [
            *("wrk", "-t1", f"-c{connections}", f"-d{round(seconds)}s", "--timeout", "10s"),
            *("--latency", "-s", LUA),
            *("-H", f"Authorization: Bearer {key}", url),
        ],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ) | {"BENCH_BODY": body or ""},
    )
    line = next(x for x in done.stdout.splitlines() if x.startswith("{"))
    raw = json.loads(line)
    if raw["socket_errors"] or raw["non_2xx"]:
        raise SystemExit(f"{url}: errors under load: {raw}")
    return {
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50": raw["p50_us"] / 1000,
        "p99": raw["p99_us"] / 1000,
    }


def hey(url: str, key: str, *, rate: int, seconds: int) -> dict[str, float]:
    """An open loop at ``rate`` requests/s (hey: 50 senders, each at a fixed rate)."""
    senders = 50
    done = subprocess.run(
        [
            *("hey", "-z", f"{seconds}s", "-c", str(senders), "-q", f"{rate / senders:.2f}"),
            *("-H", f"Authorization: Bearer {key}", "-o", "csv", url),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    if not rows or any(r["status-code"] != "200" for r in rows):
        raise SystemExit(f"{url}: open loop failed or answered non-200")
    ms = sorted(float(r["response-time"]) * 1000 for r in rows)
    return {
        "rps": len(ms) / seconds,
        "p50": statistics.median(ms),
        "p99": ms[min(len(ms) - 1, int(len(ms) * 0.99))],
    }


def _normal(value: Any) -> Any:
    """JSON with timestamps compared as instants ("Z" and "+00:00" are the same time)."""
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items() if k != "request_id"}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    if isinstance(value, str) and len(value) >= 20 and value[4:5] == "-" and "T" in value:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return value
    return value


def same_answers(urls: dict[str, str], paths: dict[str, str], key: str) -> None:
    """Every server gives the same JSON for each page (request ids aside), 50 rows each."""
    headers = {"Authorization": f"Bearer {key}"}
    for label, path in paths.items():
        answers = {n: httpx.get(urls[n] + path, headers=headers).json() for n in urls}
        mine = _normal(answers["switchboard"])
        if len(mine["data"]) != 50:
            raise SystemExit(f"{label}: expected 50 rows, got {len(mine['data'])}")
        for name in list(urls)[1:]:
            if _normal(answers[name]) != mine:
                raise SystemExit(f"{label}: {name} answers differently from Switchboard")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--json")
    parser.add_argument(
        "--baseline",
        help="a checkout of an earlier Switchboard (git worktree add DIR <commit>) measured "
        "side by side as 'before'",
    )
    args = parser.parse_args()
    for tool in ("wrk", "hey"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing: apt-get install -y wrk hey")

    ensure_services()
    work = WORK / "api"
    env = bench_env(database="switchboard_bench_api", redis_db=2, work=work)
    # Throttling stays on (it is part of every request) but well above the load generated here.
    env["API_THROTTLE_AUTH_RATE"] = "10000000/m"
    env["API_THROTTLE_ANON_RATE"] = "10000000/m"
    env["API_THROTTLE_IP_RATE"] = "10000000/m"
    django_setup(env)
    seeded = seed(runs=200, records=200)
    paths = {
        "runs": "/api/v1/runs?limit=50",
        "records": f"/api/v1/connections/{seeded.connection_id}/records?object=contact&limit=50",
    }
    report = Report(
        benchmark="API",
        command=f"python -m bench.api --rounds {args.rounds} --seconds {args.seconds} "
        f"--connections {args.connections}",
    )
    try:
        measure(report, env, work, paths, seeded, args)
    finally:  # what was measured is shown even when a later step fails
        report.print()
        report.write(args.json)


def measure(
    report: Report,
    env: dict[str, str],
    work: Path,
    paths: dict[str, str],
    seeded: Seeded,
    args: argparse.Namespace,
) -> None:
    capacity = 0.0
    names = (*NAMES, BEFORE) if args.baseline else NAMES
    for workers in [int(w) for w in args.workers.split(",")]:
        with servers(env, work, workers, names, args.baseline) as urls:
            same_answers(urls, paths, seeded.key)
            for name in names:  # warm every process: imports, pools, caches
                for path in paths.values():
                    wrk(urls[name] + path, seeded.key, seconds=2, connections=args.connections)
            results: dict[tuple[str, str], list[dict[str, float]]] = {}
            for r in range(args.rounds):
                order = names[r % len(names) :] + names[: r % len(names)]  # who goes first rotates
                for label, path in paths.items():
                    for name in order:
                        results.setdefault((label, name), []).append(
                            wrk(
                                urls[name] + path,
                                seeded.key,
                                seconds=args.seconds,
                                connections=args.connections,
                            )
                        )
            for label in paths:
                ours = results[(label, "switchboard")]
                rps = [x["rps"] for x in ours]
                med, low, high = spread(rps)
                if workers == 2 and label == "runs":
                    capacity = med
                fa = results[(label, "fastapi")]
                drf = results[(label, "drf")]
                if args.baseline:
                    before = results[(label, BEFORE)]
                    ratios = [a["rps"] / b["rps"] for a, b in zip(ours, before, strict=True)]
                    med_b, low_b, high_b = spread(ratios)
                    report.add(
                        Figure(
                            f"{label}: throughput / before, {workers} worker(s)",
                            med_b,
                            "x",
                            low_b,
                            high_b,
                            reference=f"before {statistics.median(x['rps'] for x in before):.0f}"
                            f" req/s ({Path(args.baseline).name}), same rounds",
                        )
                    )
                report.add(
                    Figure(
                        f"{label}: throughput, {workers} worker(s), c={args.connections}",
                        med,
                        "req/s",
                        low,
                        high,
                        reference=f"FastAPI {statistics.median(x['rps'] for x in fa):.0f}, "
                        f"DRF {statistics.median(x['rps'] for x in drf):.0f} req/s",
                    )
                )
                for ref_name, ref, goal in (("FastAPI", fa, 0.8), ("DRF", drf, 1.3)):
                    ratios = [a["rps"] / b["rps"] for a, b in zip(ours, ref, strict=True)]
                    med_r, low_r, high_r = spread(ratios)
                    report.add(
                        Figure(
                            f"{label}: throughput / {ref_name}, {workers} worker(s)",
                            med_r,
                            "x",
                            low_r,
                            high_r,
                            reference="per-round ratio, same rounds",
                            goal=f">= {goal}x" if workers == 2 else "",
                            met=med_r >= goal if workers == 2 else None,
                        )
                    )
                p50, p99 = spread([x["p50"] for x in ours]), spread([x["p99"] for x in ours])
                report.add(
                    Figure(
                        f"{label}: p50 / p99 under load, {workers} worker(s)",
                        p50[0],
                        f"ms / {p99[0]:.1f} ms",
                        reference=f"FastAPI {statistics.median(x['p50'] for x in fa):.1f} / "
                        f"{statistics.median(x['p99'] for x in fa):.1f} ms",
                    )
                )
            if workers == 2:
                unloaded(report, urls, paths, seeded, args)
                open_loop(report, urls, paths, seeded, capacity)


def unloaded(
    report: Report,
    urls: dict[str, str],
    paths: dict[str, str],
    seeded: Seeded,
    args: argparse.Namespace,
) -> None:
    """One connection, one request at a time: latency with nothing else going on."""
    for label, path in paths.items():
        ours: list[dict[str, float]] = []
        ref: list[dict[str, float]] = []
        before: list[dict[str, float]] = []
        for _ in range(args.rounds):
            ours.append(wrk(urls["switchboard"] + path, seeded.key, seconds=3, connections=1))
            ref.append(wrk(urls["fastapi"] + path, seeded.key, seconds=3, connections=1))
            if BEFORE in urls:
                before.append(wrk(urls[BEFORE] + path, seeded.key, seconds=3, connections=1))
        for pct, goal in (("p50", 4.0), ("p99", 8.0)):
            med, low, high = spread([x[pct] for x in ours])
            then = f"; before {statistics.median(x[pct] for x in before):.2f} ms" if before else ""
            report.add(
                Figure(
                    f"{label}: unloaded {pct} (1 connection)",
                    med,
                    "ms",
                    low,
                    high,
                    reference=f"FastAPI {statistics.median(x[pct] for x in ref):.2f} ms{then}",
                    goal=f"< {goal:g} ms",
                    met=med < goal,
                )
            )
    body = json.dumps({"input": {"contact_id": "5001"}, "connection_id": seeded.connection_id})
    enqueue = [
        wrk(
            f"{urls['switchboard']}/api/v1/workflows/{seeded.workflow}/runs",
            seeded.key,
            seconds=3,
            connections=1,
            body=body,
        )
        for _ in range(args.rounds)
    ]
    med, low, high = spread([x["p99"] for x in enqueue])
    report.add(
        Figure(
            "enqueue (POST /workflows/{key}/runs): p99, 1 connection",
            med,
            "ms",
            low,
            high,
            reference=f"p50 {statistics.median(x['p50'] for x in enqueue):.2f} ms",
            goal="< 10 ms",
            met=med < 10,
        )
    )


def open_loop(
    report: Report,
    urls: dict[str, str],
    paths: dict[str, str],
    seeded: Seeded,
    capacity: float,
) -> None:
    """A fixed rate at half the measured capacity (2 workers, runs page): the p99 users see."""
    rate = int(capacity / 2)
    for label, path in paths.items():
        ours = hey(urls["switchboard"] + path, seeded.key, rate=rate, seconds=10)
        ref = hey(urls["fastapi"] + path, seeded.key, rate=rate, seconds=10)
        report.add(
            Figure(
                f"{label}: p99 at {rate} req/s open loop (half capacity)",
                ours["p99"],
                "ms",
                reference=f"FastAPI {ref['p99']:.1f} ms; p50 {ours['p50']:.1f} vs "
                f"{ref['p50']:.1f} ms; achieved {ours['rps']:.0f} req/s",
                goal="< 50 ms",
                met=ours["p99"] < 50,
            )
        )


if __name__ == "__main__":
    main()
