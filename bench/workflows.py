"""Workflow overhead: a three-node graph with no model, from trigger to done, through the real
worker, each figure beside its reference, measured in alternating rounds.

- **Celery round trip** (the reference of trigger -> done): ``bench.noop`` sent to the
  ``workflows`` queue; the worker runs it and pushes to a Redis list the benchmark waits on.
- **LangGraph overhead per checkpointed step**: the three node functions of ``bench_three``
  run through the compiled graph as the runner runs it (PostgreSQL checkpointer, its config,
  streams and durability: ``graph_config``, ``STREAM_MODES``, ``DURABILITY``), minus the same
  three functions called directly, divided by three. Twice: with one saver and graph kept
  across runs (LangGraph's own cost), and with both taken for each run the way the runner
  takes them (``checkpoints.checkpointer()`` with a worker's kept connections, a copy of the
  compiled graph).
- **Trigger -> done**: ``run_start`` (what ``POST /workflows/{key}/runs`` calls) in this
  process; done when the run's row says ``succeeded`` (a trigger on the benchmark's own
  database sends a NOTIFY when the status changes; nothing polls). p50/p99, sequentially and
  with ``--concurrency`` runs in flight (runs per minute, against no-ops per minute at the same
  concurrency).

The worker's CPU time per run (from /proc) is shown beside its CPU time per no-op: on a busy
machine it moves far less than latencies do.

Each round runs every figure and its reference back to back, the order swapped every round;
the median over ``--rounds`` rounds is quoted with the spread (lowest-highest). With
``--profile DIR`` a further ``--profile-runs`` sequential runs go under py-spy attached to the
worker (``DIR/trigger_to_done.folded``; the script prints where the worker's CPU went).

    python bench/workflows.py [--rounds 5] [--calls 100] [--runs 40] [--json PATH]

Makes its own database (switchboard_bench_wf) and Redis db (4); the worker is the Procfile's
(threads, concurrency 4) on the ``workflows`` queue. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: python bench/workflows.py
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    BIN,
    WORK,
    Figure,
    Report,
    bench_env,
    django_setup,
    ensure_services,
    spread,
    worker,
)

if TYPE_CHECKING:
    import psycopg
    import redis

    from workflows.context import RunContext
    from workflows.models import Workflow

DATABASE = "switchboard_bench_wf"
REDIS_DB = 4
CHANNEL = "bench_run_done"
STEPS = 3
VALUES = [5.0, 3.0, 8.0, 1.0, 9.0, 2.0, 7.0]

# Sends ``<run id> <status>`` on CHANNEL when a run's status changes (delivered on commit).
NOTIFY_SQL = f"""
CREATE OR REPLACE FUNCTION bench_run_done() RETURNS trigger AS $$
BEGIN
  IF NEW.status IS DISTINCT FROM OLD.status AND NEW.status <> 'running' THEN
    PERFORM pg_notify('{CHANNEL}', NEW.id::text || ' ' || NEW.status);
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS bench_run_done ON workflows_workflowrun;
CREATE TRIGGER bench_run_done AFTER UPDATE OF status ON workflows_workflowrun
  FOR EACH ROW EXECUTE FUNCTION bench_run_done();
"""


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0-1) by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) process ``pid`` has used, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Series:
    """Latencies (ms) per round, the worker's CPU ms per call per round, and a rate per round
    where one was measured."""

    rounds: list[list[float]] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)

    def measure(self, pid: int, batch: Callable[[], list[float]]) -> None:
        """One round: ``batch``'s latencies and the worker's CPU time per call in it."""
        before = cpu_seconds(pid)
        latencies = batch()
        self.cpu.append((cpu_seconds(pid) - before) * 1000 / len(latencies))
        self.rounds.append(latencies)

    def p50s(self) -> list[float]:
        return [statistics.median(r) for r in self.rounds]

    def p99s(self) -> list[float]:
        return [percentile(r, 0.99) for r in self.rounds]

    def pooled(self, q: float) -> float:
        return percentile([v for r in self.rounds for v in r], q)


# -- setup -------------------------------------------------------------------------------------


def seed() -> Workflow:
    """An organisation with one active connection (never called: the graph makes no provider
    call) and an enabled ``bench_three`` workflow that needs no approval."""
    from django.utils import timezone

    from accounts.models import Organization
    from bench.graphs import GRAPH_KEY
    from integrations.models import Connection
    from workflows.models import Workflow

    org = Organization.objects.create(name="Bench", slug=f"bench-{uuid.uuid4().hex[:8]}")
    Connection.objects.create(
        organization=org,
        provider="hubspot",
        external_account_id="1",
        display_name="bench.hubspot.test",
        access_token="unused",  # noqa: S106 - never sent: the graph calls no provider
        token_expires_at=timezone.now(),
    )
    return Workflow.objects.create(
        organization=org,
        key=GRAPH_KEY,
        graph=GRAPH_KEY,
        name="Bench",
        config={"require_approval": False},
    )


def listener(url: str) -> psycopg.Connection[Any]:
    import psycopg

    conn = psycopg.connect(url, autocommit=True)
    conn.execute(NOTIFY_SQL)
    conn.execute(f"LISTEN {CHANNEL}")
    return conn


# -- (a) Celery no-op round trip ---------------------------------------------------------------


class Noop:
    def __init__(self, client: redis.Redis) -> None:
        from bench.graphs import noop_task

        self.task = noop_task
        self.client = client
        self.key = f"bench:noop:{uuid.uuid4().hex}"

    def send(self) -> None:
        self.task.apply_async((self.key,), queue="workflows")

    def wait(self, n: int = 1) -> None:
        for _ in range(n):
            if self.client.blpop([self.key], timeout=30) is None:
                raise SystemExit("a no-op task did not come back within 30 s (see the worker log)")

    def sequential(self, calls: int) -> list[float]:
        out = []
        for _ in range(calls):
            t0 = time.perf_counter()
            self.send()
            self.wait()
            out.append((time.perf_counter() - t0) * 1000)
        return out

    def concurrent(self, calls: int, in_flight: int) -> float:
        """Calls per minute with ``in_flight`` outstanding at any time."""
        t0 = time.perf_counter()
        sent = 0
        for _ in range(min(in_flight, calls)):
            self.send()
            sent += 1
        for _ in range(calls):
            self.wait()
            if sent < calls:
                self.send()
                sent += 1
        return calls / (time.perf_counter() - t0) * 60


# -- (c) trigger -> done -----------------------------------------------------------------------


class Runs:
    def __init__(self, workflow: Workflow, notes: psycopg.Connection[Any]) -> None:
        from accounts.audit import Actor

        self.workflow = workflow
        self.notes = notes
        self.actor = Actor(label="bench")
        self.started: dict[str, float] = {}
        self.ended: deque[tuple[str, str, float]] = deque()
        self.failed = 0

    def start(self) -> None:
        from workflows.services import run_start

        t0 = time.perf_counter()
        run = run_start(
            workflow=self.workflow, actor=self.actor, trigger="api", input={"values": VALUES}
        )
        self.started[str(run.pk)] = t0

    def done(self) -> float:
        """Wait for the next run to end; its trigger -> done time in ms."""
        deadline = time.monotonic() + 60
        while not self.ended and time.monotonic() < deadline:
            # Several notifications can come in one read: keep them all, stamped on arrival.
            for note in self.notes.notifies(timeout=1, stop_after=1):
                run_id, status = note.payload.split(" ", 1)
                if run_id in self.started:
                    self.ended.append((run_id, status, time.perf_counter()))
        if not self.ended:
            raise SystemExit(f"no run ended within 60 s ({len(self.started)} outstanding)")
        run_id, status, at = self.ended.popleft()
        if status != "succeeded":
            self.failed += 1
        return (at - self.started.pop(run_id)) * 1000

    def sequential(self, runs: int) -> list[float]:
        out = []
        for _ in range(runs):
            self.start()
            out.append(self.done())
        return out

    def concurrent(self, runs: int, in_flight: int) -> tuple[list[float], float]:
        """(latencies, runs per minute) with ``in_flight`` runs outstanding at any time."""
        out = []
        t0 = time.perf_counter()
        started = 0
        for _ in range(min(in_flight, runs)):
            self.start()
            started += 1
        for _ in range(runs):
            out.append(self.done())
            if started < runs:
                self.start()
                started += 1
        return out, runs / (time.perf_counter() - t0) * 60


# -- (b) LangGraph overhead per checkpointed step ----------------------------------------------


async def direct(values: list[float]) -> dict[str, Any]:
    """The three node functions called one after another, as the graph would."""
    from bench.graphs import NODES

    state: dict[str, Any] = {"values": values}
    for _name, node in NODES:
        state.update(await node(state))  # type: ignore[arg-type]
    return state


async def through_graph(graph: Any, context: RunContext) -> Any:
    """One run of the compiled graph as ``workflows.runner`` drives it (its config, streams and
    durability; no model, so no callbacks); the final state."""
    from bench.graphs import GRAPH_KEY
    from workflows.runner import DURABILITY, STREAM_MODES, graph_config

    values = None
    async for mode, event in graph.astream(
        {"values": VALUES},
        graph_config(GRAPH_KEY, uuid.uuid4().hex),
        context=context,
        stream_mode=STREAM_MODES,
        durability=DURABILITY,
    ):
        if mode == "values":
            values = event
    return values


async def timed(runs: int, one: Callable[[], Awaitable[Any]]) -> float:
    """Mean ms per call of ``one`` over ``runs`` calls."""
    t0 = time.perf_counter()
    for _ in range(runs):
        await one()
    return (time.perf_counter() - t0) * 1000 / runs


async def langgraph_overhead(
    context: RunContext, *, rounds: int, runs: int
) -> tuple[list[float], list[float], list[float]]:
    """Per round: direct ms per run, overhead per step with a kept saver, overhead per step
    with the saver and graph taken per run as the runner takes them (a worker's kept
    connection, the compiled graph's copy)."""
    from bench.graphs import GRAPH_KEY
    from workflows.checkpoints import checkpointer, keep_connections
    from workflows.registry import compiled_graph

    async def per_run() -> None:
        async with checkpointer() as saver:
            await through_graph(compiled_graph(GRAPH_KEY).copy({"checkpointer": saver}), context)

    keep_connections(True)  # as a worker does
    direct_ms, kept, fresh = [], [], []
    async with checkpointer() as saver:
        graph = compiled_graph(GRAPH_KEY).copy({"checkpointer": saver})
        await through_graph(graph, context)  # warm: the saver's first queries
        await per_run()
        for i in range(rounds):
            order = ["direct", "kept", "fresh"]
            if i % 2:
                order.reverse()
            got: dict[str, float] = {}
            for kind in order:
                if kind == "direct":
                    got[kind] = await timed(runs * 20, lambda: direct(VALUES))
                elif kind == "kept":
                    got[kind] = await timed(runs, lambda: through_graph(graph, context))
                else:
                    got[kind] = await timed(runs, per_run)
            direct_ms.append(got["direct"])
            kept.append((got["kept"] - got["direct"]) / STEPS)
            fresh.append((got["fresh"] - got["direct"]) / STEPS)
    keep_connections(False)
    return direct_ms, kept, fresh


def run_context(workflow: Workflow) -> RunContext:
    from accounts.audit import Actor
    from bench.graphs import SPEC
    from integrations.models import Connection
    from workflows.context import RunContext
    from workflows.tools import CrmTools

    connection = Connection.objects.get(organization_id=workflow.organization_id)
    return RunContext(
        run_id=uuid.uuid4(),
        thread_id="bench",
        organization_id=workflow.organization_id,
        attempt=1,
        config=SPEC.validate_config({"require_approval": False}),
        tools=CrmTools(connection, actor=Actor(label="bench")),
    )


# -- profile -----------------------------------------------------------------------------------


@contextmanager
def profiled(pid: int, out: Path) -> Iterator[Path]:
    """py-spy attached to ``pid`` while the block runs, sampling the thread holding the GIL
    (CPU, not waits); yields the folded-stacks file it writes (speedscope.app and
    flamegraph.pl read it)."""
    out.mkdir(parents=True, exist_ok=True)
    folded = out / "trigger_to_done.folded"
    command = [str(BIN / "py-spy"), "record", "--pid", str(pid), "--rate", "250", "--gil"]
    proc = subprocess.Popen(
        [*command, "--format", "raw", "-o", str(folded)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # attached
    try:
        yield folded
    finally:
        proc.send_signal(signal.SIGINT)  # py-spy writes its file and exits
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


# Where a sample of the worker was, by thread: the first marker found in its stack names it.
ROLES = (
    ("SyncToAsync.thread_handler", "task thread: ORM calls (sync_to_async)"),
    ("Runner.run (asyncio", "run's event loop: LangGraph, checkpoints, the runner"),
    ("run_task (workflows", "task thread: async_to_sync, Celery's tracer"),
    ("asynloop (celery", "Celery's consumer: receive, ack"),
    ("_worker (concurrent", "other threads: to_thread, Celery's pool"),
)


def profile_summary(folded: Path, limit: int = 15) -> list[str]:
    """The share of the worker's CPU (py-spy ``--gil`` samples) by thread role, then the
    functions that held it longest themselves."""
    roles: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        role = next((name for marker, name in ROLES if marker in stack), "other")
        roles[role] = roles.get(role, 0) + n
        leaf = stack.rsplit(";", 1)[-1]
        own[leaf] = own.get(leaf, 0) + n
    lines = [
        f"{n / max(total, 1):6.1%}  {role}"
        for role, n in sorted(roles.items(), key=lambda kv: -kv[1])
    ]
    lines.append("  by function (self):")
    ranked = sorted(own.items(), key=lambda kv: -kv[1])[:limit]
    lines += [f"{n / max(total, 1):6.1%}  {leaf}" for leaf, n in ranked]
    return lines


# -- main --------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=100, help="no-op calls per round")
    parser.add_argument("--runs", type=int, default=40, help="workflow runs per round")
    parser.add_argument("--concurrency", type=int, default=4, help="runs in flight (0: skip)")
    parser.add_argument("--graph-runs", type=int, default=50, help="graph runs per round (b)")
    parser.add_argument("--profile", type=Path, help="py-spy the worker during a batch")
    parser.add_argument("--profile-runs", type=int, default=300)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    folded = Path("/nonexistent")

    ensure_services()
    work = WORK / "workflows"
    env = bench_env(database=DATABASE, redis_db=REDIS_DB, work=work)
    env["WORKFLOW_GRAPH_MODULES"] = "bench.graphs"
    django_setup(env)

    import redis

    workflow = seed()
    notes = listener(env["DATABASE_URL"])
    client = redis.Redis.from_url(env["REDIS_URL"])
    report = Report(benchmark="workflows", command=" ".join(["bench/workflows.py", *sys.argv[1:]]))

    # (b) in this process, before the worker starts (nothing else on the machine from us).
    direct_ms, kept, fresh = asyncio.run(
        langgraph_overhead(run_context(workflow), rounds=args.rounds, runs=args.graph_runs)
    )

    noop_seq, run_seq, noop_rate, run_con = Series(), Series(), Series(), Series()
    with worker(env, work, queues="workflows", name="wfbench", pool="threads", concurrency=4) as w:
        noop, runs = Noop(client), Runs(workflow, notes)
        noop.sequential(50)  # warm: connections, imports, the graph's first compile
        runs.sequential(10)
        for i in range(args.rounds):
            order = ["noop", "run"] if i % 2 == 0 else ["run", "noop"]
            for kind in order:
                if kind == "noop":
                    noop_seq.measure(w.pid, lambda: noop.sequential(args.calls))
                else:
                    run_seq.measure(w.pid, lambda: runs.sequential(args.runs))
            if args.concurrency > 1:
                for kind in order:
                    if kind == "noop":
                        noop_rate.rates.append(noop.concurrent(args.calls * 2, args.concurrency))
                    else:
                        lat, rate = runs.concurrent(args.runs, args.concurrency)
                        run_con.rounds.append(lat)
                        run_con.rates.append(rate)
            print(
                f"round {i + 1}: no-op p50 {noop_seq.p50s()[-1]:.2f} ms, "
                f"run p50 {run_seq.p50s()[-1]:.1f} ms"
                + (f", {run_con.rates[-1]:.0f} runs/min" if run_con.rates else ""),
                flush=True,
            )
        if args.profile:
            with profiled(w.pid, args.profile) as folded:
                runs.sequential(args.profile_runs)
    notes.close()
    client.close()

    add_figures(
        report, noop_seq, run_seq, noop_rate, run_con, direct_ms, kept, fresh, args.concurrency
    )
    if runs.failed:
        report.notes.append(f"{runs.failed} runs did not succeed (see the worker log)")
    report.notes.append(
        f"{args.rounds} rounds alternating each figure with its reference; "
        f"{args.calls} no-ops and {args.runs} runs per round sequentially"
        + (f", then {args.concurrency} in flight" if args.concurrency > 1 else "")
        + "; p99 pooled over all rounds, spread = per-round p99s."
    )
    report.print()
    if args.profile and folded.exists():
        print(f"\nworker CPU during {args.profile_runs} runs (py-spy, {folded}):")
        for line in profile_summary(folded):
            print(f"  {line}")
    report.write(args.json)


def add_figures(
    report: Report,
    noop_seq: Series,
    run_seq: Series,
    noop_rate: Series,
    run_con: Series,
    direct_ms: list[float],
    kept: list[float],
    fresh: list[float],
    in_flight: int,
) -> None:
    noop_p50 = spread(noop_seq.p50s())
    report.add(
        Figure(
            "celery no-op round trip p50",
            noop_p50[0],
            "ms",
            noop_p50[1],
            noop_p50[2],
            goal="< 3 ms",
            met=noop_p50[0] < 3,
        )
    )
    p99 = spread(noop_seq.p99s())
    report.add(Figure("celery no-op round trip p99", noop_seq.pooled(0.99), "ms", p99[1], p99[2]))
    d = spread(direct_ms)
    report.add(
        Figure("three nodes called directly", d[0] * 1000, "us/run", d[1] * 1000, d[2] * 1000)
    )
    k = spread(kept)
    report.add(
        Figure(
            "langgraph overhead per step (kept saver)",
            k[0],
            "ms",
            k[1],
            k[2],
            reference=f"direct calls {d[0] * 1000:.0f} us/run",
            goal="<= 3 ms",
            met=k[0] <= 3,
        )
    )
    f = spread(fresh)
    report.add(
        Figure(
            "langgraph overhead per step (saver per run)",
            f[0],
            "ms",
            f[1],
            f[2],
            reference=f"direct calls {d[0] * 1000:.0f} us/run",
            goal="<= 3 ms",
            met=f[0] <= 3,
        )
    )
    r50 = spread(run_seq.p50s())
    ratio = spread([r / n for r, n in zip(run_seq.p50s(), noop_seq.p50s(), strict=True)])
    report.add(
        Figure(
            "trigger -> done p50 (3 nodes)",
            r50[0],
            "ms",
            r50[1],
            r50[2],
            reference=f"no-op round trip x{ratio[0]:.1f} ({ratio[1]:.1f}-{ratio[2]:.1f})",
            goal="< 50 ms",
            met=r50[0] < 50,
        )
    )
    cpu, noop_cpu = spread(run_seq.cpu), spread(noop_seq.cpu)
    report.add(
        Figure(
            "worker CPU per run",
            cpu[0],
            "ms",
            cpu[1],
            cpu[2],
            reference=f"per no-op {noop_cpu[0]:.2f} ms ({noop_cpu[1]:.2f}-{noop_cpu[2]:.2f})",
        )
    )
    r99 = spread(run_seq.p99s())
    report.add(Figure("trigger -> done p99", run_seq.pooled(0.99), "ms", r99[1], r99[2]))
    seq_rate = spread([60_000 / statistics.mean(r) for r in run_seq.rounds])
    report.add(
        Figure("runs per minute, one at a time", seq_rate[0], "/min", seq_rate[1], seq_rate[2])
    )
    if run_con.rates:
        rate = spread(run_con.rates)
        noop = spread(noop_rate.rates)
        report.add(
            Figure(
                f"runs per minute, {in_flight} in flight",
                rate[0],
                "/min",
                rate[1],
                rate[2],
                reference=f"no-ops at {in_flight} in flight {noop[0]:,.0f}/min",
            )
        )
        c50, c99 = spread(run_con.p50s()), spread(run_con.p99s())
        report.add(
            Figure(f"trigger -> done p50, {in_flight} in flight", c50[0], "ms", c50[1], c50[2])
        )
        report.add(
            Figure(
                f"trigger -> done p99, {in_flight} in flight",
                run_con.pooled(0.99),
                "ms",
                c99[1],
                c99[2],
            )
        )


if __name__ == "__main__":
    main()
