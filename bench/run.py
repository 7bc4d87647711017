"""``make bench``: every benchmark in turn, one table, and ``bench/RESULTS.md``.

Each benchmark runs in its own process (``python -m bench.<name> --json ...``), starts what it
needs (PostgreSQL and Redis when down, the web servers, workers and the sandbox) and stops it
again, so they never measure each other. RESULTS.md holds the figures, the machine, the date,
the commands, and ``bench/ANALYSIS.md`` (what the profiles showed, what changed, and why a goal
that is missed is missed).

    python -m bench.run [--only api,sync] [--quick]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import PYTHON, ROOT, WORK, Report, ensure_services, load_report

# name -> (module, arguments for a full run, arguments for --quick)
BENCHMARKS: dict[str, tuple[str, list[str], list[str]]] = {
    "api": ("bench.api", [], ["--rounds", "1", "--seconds", "3"]),
    "sync": ("bench.sync", [], ["--rounds", "1", "--contacts", "5000"]),
    "memory": ("bench.memory", [], ["--contacts", "10000", "--rounds", "1"]),
    "workflows": ("bench.workflows", [], ["--rounds", "1"]),
}


def _out(*args: str) -> str:
    try:
        return subprocess.run(args, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "unknown"


def machine() -> list[str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    postgres = _out("psql", "-h", "127.0.0.1", "-U", "postgres", "-Atc", "show server_version")
    redis = _out("redis-cli", "-h", "127.0.0.1", "info", "server")
    redis = redis.split("redis_version:")[-1].split()[0] if "redis_version:" in redis else "?"
    wrk = _out("wrk", "-v").splitlines()
    return [
        f"CPU: {cpu}, {os.cpu_count()} cores; memory {mem_kb / 1024 / 1024:.0f} GiB",
        f"OS: {platform.platform()}",
        f"Python {platform.python_version()}; PostgreSQL {postgres}; Redis {redis}",
        f"Load generators: {wrk[0] if wrk else 'wrk missing'}; hey (Debian package)",
    ]


def table(reports: list[Report]) -> list[str]:
    lines = [
        "| Benchmark | Figure | Measured (median, spread) | Reference, side by side | Goal |",
        "|---|---|---|---|---|",
    ]
    for report in reports:
        for f in report.figures:
            goal = ""
            if f.goal:
                goal = f"{f.goal}: " + {True: "met", False: "**missed**", None: ""}[f.met]
            lines.append(
                f"| {report.benchmark} | {f.name} | {f.shown()} | {f.reference} | {goal} |"
            )
    return lines


def write_results(reports: list[Report], started: datetime, seconds: float | None) -> Path:
    took = f" (the run took {seconds / 60:.1f} min)" if seconds is not None else ""
    lines = [
        "# Benchmark results",
        "",
        f"Written by `make bench` on {started:%Y-%m-%d %H:%M} UTC{took}; each benchmark's "
        "own time is under Commands. Figures are medians over rounds with "
        "the spread (min-max) in brackets; each is measured side by side with its reference "
        "in the same run.",
        "",
        "## Machine",
        "",
        *(f"- {line}" for line in machine()),
        "",
        "## Figures",
        "",
        *table(reports),
        "",
        "## Commands",
        "",
        *(f"- {r.benchmark} ({r.measured_at or 'this run'} UTC): `{r.command}`" for r in reports),
        "",
    ]
    notes = [f"- {r.benchmark}: {note}" for r in reports for note in r.notes]
    if notes:
        lines += ["## Notes from the run", "", *notes, ""]
    analysis = ROOT / "bench" / "ANALYSIS.md"
    if analysis.exists():
        lines += [analysis.read_text().rstrip(), ""]
    path = ROOT / "bench" / "RESULTS.md"
    path.write_text("\n".join(lines))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(BENCHMARKS))
    parser.add_argument("--quick", action="store_true", help="fewer rounds, smaller data")
    parser.add_argument("--baseline", help="an earlier checkout for the API's before/after")
    parser.add_argument(
        "--rewrite", action="store_true", help="only rewrite RESULTS.md from the last figures"
    )
    args = parser.parse_args()
    if args.rewrite:
        found = [
            load_report(WORK / f"{n}.json") for n in BENCHMARKS if (WORK / f"{n}.json").exists()
        ]
        print(f"wrote {write_results(found, datetime.now(UTC), None).relative_to(ROOT)}")
        return
    ensure_services()
    WORK.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    clock = time.monotonic()
    reports: list[Report] = []
    failed: list[str] = []
    for name in args.only.split(","):
        module, full, quick = BENCHMARKS[name]
        out = WORK / f"{name}.json"
        out.unlink(missing_ok=True)
        extra = ["--baseline", args.baseline] if name == "api" and args.baseline else []
        command = [PYTHON, "-m", module, *(quick if args.quick else full), *extra]
        command += ["--json", str(out)]
        print(f"\n=== {name}: {' '.join(command[1:])}", flush=True)
        done = subprocess.run(command, cwd=ROOT, check=False)
        if out.exists():
            reports.append(load_report(out))
        if done.returncode != 0:
            failed.append(name)
    # Benchmarks not run this time keep the figures of their last run (RESULTS.md dates each).
    ran = {r.benchmark for r in reports}
    for name in BENCHMARKS:
        earlier = WORK / f"{name}.json"
        if name not in args.only.split(",") and earlier.exists():
            report = load_report(earlier)
            if report.benchmark not in ran:
                reports.append(report)
    print("\n# All figures")
    for report in reports:
        report.print()
    path = write_results(reports, started, time.monotonic() - clock)
    print(f"\nwrote {path.relative_to(ROOT)}")
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
