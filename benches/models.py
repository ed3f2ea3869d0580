"""Models benchmark: `pulse run` against DuckDB running the same `queries/*.sql` on the same lake.

Usage: python benches/models.py [90d|1m|10m|100m ...] [--workdir DIR] [--as-of 2026-11-23]
       [--memory-limit 2GiB] [--no-duckdb] [--no-build]
(`90d` and `1m` are the same communities with 90 and 365 days of history.)
Run with the venv of scripts/test (DuckDB) plus numpy (`pip install numpy`).

DuckDB gets the very same SQL files: the four functions pulse adds to DataFusion are DuckDB
macros here, `$name` parameters are DuckDB named parameters, PageRank runs in numpy. DuckDB
computes the rollups over the whole history each time (it has no incremental state); pulse is
measured cold (rollups built from scratch), warm (same as_of again) and for the next day.
History growth: compare the `90d` and `1m` rows (a fixed 30-day window over 90 and 365 days).
"""
import argparse
import datetime as dt
import json
import shutil
import sys
import tempfile
from pathlib import Path

import harness

DUCKDB_MODELS = harness.ROOT / "tests" / "python" / "duckdb_models.py"


TIMEZONES = {"python-camp": "Asia/Shanghai", "data-circle": "America/New_York"}


def pulse_run(lake, config, as_of):
    cmd = [str(harness.PULSE), "-q", "--config", str(config), "--lake", str(lake), "run", "--as-of", as_of]
    return harness.run_measured(cmd)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("sizes", nargs="*", default=["1m"])
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "pulse-bench"))
    parser.add_argument("--as-of", default=harness.END)
    parser.add_argument("--memory-limit", help="engine.memory_limit for pulse, e.g. 2GiB")
    parser.add_argument("--no-duckdb", action="store_true", help="measure pulse only (100m)")
    parser.add_argument("--no-build", action="store_true", help="use the release binary as it is")
    args = parser.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    config = work / "pulse-bench.toml"
    engine = f'[engine]\nmemory_limit = "{args.memory_limit}"\n' if args.memory_limit else ""
    config.write_text(engine + "".join(f'[[communities]]\nid = "{c}"\ntimezone = "{tz}"\n' for c, tz in TIMEZONES.items()))
    if not args.no_build:
        harness.build()
    print("| input | events | pulse cold (rollups + models) | peak RSS | pulse warm (same as_of) | pulse next day | peak RSS | DuckDB (same SQL) | peak RSS |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        src = harness.events_file(size, work)
        lake = work / f"lake-{size}"
        if not (lake / "events").exists():
            harness.run_measured([str(harness.PULSE), "-q", "--lake", str(lake), "import", str(src)])
        for derived in ["rollups", "metrics"]:
            shutil.rmtree(lake / derived, ignore_errors=True)
        cold, cold_rss, _ = pulse_run(lake, config, args.as_of)
        warm, _, _ = pulse_run(lake, config, args.as_of)
        next_day = (dt.date.fromisoformat(args.as_of) + dt.timedelta(days=1)).isoformat()
        daily, daily_rss, _ = pulse_run(lake, config, next_day)
        duck, duck_rss = (float("nan"), float("nan")) if args.no_duckdb else harness.run_measured(
            [sys.executable, str(DUCKDB_MODELS), str(lake), str(harness.ROOT / "queries"), args.as_of,
             str(work / f"duck-metrics-{size}"), json.dumps(TIMEZONES)]
        )[:2]
        n = harness.count_lines(src)
        print(
            f"| {size} | {n:,} | {cold:.1f} s | {cold_rss:,.0f} MiB | {warm:.1f} s | {daily:.1f} s | {daily_rss:,.0f} MiB "
            f"| {duck:.1f} s | {duck_rss:,.0f} MiB |",
            flush=True,
        )


if __name__ == "__main__":
    main()
