"""Worker memory over 50,000-record syncs: resident memory at start, at the end, and its peak.

One Celery worker (the sync queue, 4 threads, as ``bench/sync.py`` runs it) is started and left
to settle; its RSS (``rss_bytes``: the process and its children) is read idle. Each round then
connects a new organisation to a HubSpot account of ``--contacts`` contacts (default 50,000) in
the sandbox, which enforces HubSpot's limits (190 per 10 s: a sync takes about half a minute, in
slices as in production), samples the RSS every 0.1 s until the sync ends and reads it again
after ``--settle`` seconds idle. The figure is end / start of each sync (goal: flat within 1.2x;
round 1 is the worker's first sync), median of ``--rounds`` rounds (default 3) with the spread
(lowest-highest); the last end over the first start shows growth across the syncs. Start, end
and peak are shown in MB.

    python bench/memory.py [--contacts 50000] [--rounds 3] [--json PATH]

Makes its own database (switchboard_bench_mem) and Redis db (6). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: python bench/memory.py
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    WORK,
    Figure,
    Report,
    django_setup,
    ensure_services,
    rss_bytes,
    sandbox,
    spread,
    worker,
)
from bench.sync import (  # noqa: E402
    SEARCH_PER_SECOND,
    Measured,
    connect,
    prepare_sandbox,
    run_syncs,
    sync_env,
)

if TYPE_CHECKING:
    import httpx

MB = 1024 * 1024


@dataclass(frozen=True)
class Round:
    start: int  # bytes, the worker up and idle
    peak: int  # the largest sample during the sync
    end: int  # after the sync, idle for a moment
    sync: Measured

    @property
    def ratio(self) -> float:
        return self.end / self.start


def one_round(
    control: httpx.Client, proc: subprocess.Popen[bytes], log: Path, n: int, *, settle: float
) -> Round:
    """The worker's RSS idle, one full sync sampled, its RSS idle again."""
    start = rss_bytes(proc.pid)
    samples = [start]
    connection = connect(control, n)
    measured = run_syncs(
        control, [connection], [(proc, log)], on_poll=lambda: samples.append(rss_bytes(proc.pid))
    )
    time.sleep(settle)
    end = rss_bytes(proc.pid)
    return Round(start=start, peak=max(*samples, end), end=end, sync=measured)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-10s", type=int, default=190)
    parser.add_argument("--settle", type=float, default=3.0, help="idle seconds before reading")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()

    ensure_services()
    work = WORK / "memory"
    env = sync_env(database="switchboard_bench_mem", redis_db=6, work=work, per_10s=args.per_10s)
    rounds: list[Round] = []
    with ExitStack() as stack:
        sb = stack.enter_context(sandbox(env, work))
        prepare_sandbox(
            sb.control,
            per_10s=args.per_10s,
            search_per_second=SEARCH_PER_SECOND,
            contacts=args.contacts,
        )
        django_setup(env)
        proc = stack.enter_context(worker(env, work, queues="sync", name="benchmem"))
        time.sleep(args.settle)  # up, and idle: past whatever it does right after starting
        for r in range(args.rounds):
            found = one_round(sb.control, proc, work / "benchmem.log", r + 1, settle=args.settle)
            rounds.append(found)
            m = found.sync
            print(
                f"round {r + 1}: start {found.start / MB:.1f} MB, peak {found.peak / MB:.1f} MB, "
                f"end {found.end / MB:.1f} MB, end/start {found.ratio:.3f}; {m.records} records "
                f"in {m.seconds:.1f} s, {m.requests} requests, {m.rate_limited} 429s "
                f"{list(m.statuses)}",
                flush=True,
            )

    report = Report(benchmark="memory", command=" ".join(["bench/memory.py", *sys.argv[1:]]))
    ratio = spread([r.ratio for r in rounds])
    peak_ratio = spread([r.peak / r.start for r in rounds])
    records = int(spread([float(r.sync.records) for r in rounds])[0])
    report.add(
        Figure(
            "worker RSS end/start",
            ratio[0],
            "x",
            ratio[1],
            ratio[2],
            reference=f"the same worker idle before a {records:,}-record sync",
            goal="<= 1.2",
            met=ratio[0] <= 1.2,
        )
    )
    report.add(
        Figure(
            "worker RSS after all / before all",
            rounds[-1].end / rounds[0].start,
            "x",
            reference=f"{len(rounds)} syncs on the same worker",
        )
    )
    report.add(
        Figure(
            "worker RSS peak/start",
            peak_ratio[0],
            "x",
            peak_ratio[1],
            peak_ratio[2],
            reference="sampled every 0.1 s",
        )
    )
    for label, values in (
        ("worker RSS at start", [r.start for r in rounds]),
        ("worker RSS peak", [r.peak for r in rounds]),
        ("worker RSS at end", [r.end for r in rounds]),
    ):
        mid, low, high = spread([v / MB for v in values])
        report.add(Figure(label, mid, "MB", low, high))
    failed = sorted({s for r in rounds for s in r.sync.statuses if s != "succeeded"})
    if failed:
        report.notes.append(f"syncs ended {failed}")
    report.notes.append(
        f"{args.contacts:,} contacts, one full sync per round (a new connection) on one worker "
        f"(threads pool, concurrency 4); {args.rounds} rounds, median (lowest-highest); sandbox "
        f"and limiter at {args.per_10s} per 10 s; RSS read {args.settle:g} s after the worker "
        "came up and after each sync ended"
    )
    report.print()
    report.write(args.json)


if __name__ == "__main__":
    main()
