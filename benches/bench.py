"""The benchmark: pulse against DuckDB, side by side on the same input, printed as one table.

Usage (through scripts/bench, which prepares the venv): python benches/bench.py
    [--sizes 1m 10m] [--runs 3] [--only import,daily,intake] [--intake-seconds 60]
    [--memory-limit 2GiB] [--workdir DIR] [--no-build] [--no-duckdb]
    (--only also takes `compaction`, not in the default)

Rows (each the median of --runs runs; peak RSS is the median of the runs' maxima):
- import <size>: `pulse import` of generated NDJSON (validation, dedupe, Hive Parquet, durable)
  against DuckDB's read_json → validate → dedupe → COPY … PARTITION_BY (same rules, 2 threads).
  When `eatmydata` is installed, one more pulse import runs with fsync made a no-op: the
  difference is what durability costs.
- daily <size>: `pulse run` for the day after the history's last day with the rollups up to
  date (all metric tables and the report; no email is configured) against DuckDB computing
  the same tables from scratch with the same `queries/*.sql` (tests/python/duckdb_models.py;
  PageRank in numpy; the models that need pulse's Rust functions are left out there).
- intake single / batched: `pulse serve` answering `POST /v1/events` under `wrk` on loopback
  (wrk and pulse share the cores): one event per request (64 connections), or 500-event NDJSON
  batches over 8 connections (on 2 cores 8 already keep pulse busy — 16 gave the same events/s
  and, by Little's law, twice the latency) and over 4 (about 500,000 events/s: the latency at
  that rate); 200 means fsynced. Events/s, p99, non-2xx answers.
- 100m (`--sizes 100m --no-duckdb --memory-limit 2GiB`, pulse only; builds a 100M-event lake
  once, ~10 minutes and 5 GB): 10M new events imported into a lake of 100M, and the daily run
  over the 100M.
- compaction (`--only compaction`, ~15 minutes): ~2,070 small imports (three weeks, one per 15
  minutes), then the daily run and one more import before and after `pulse compact`
  (bench_compaction).
"""
import argparse
import datetime as dt
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import harness

DUCKDB_MODELS = harness.ROOT / "tests" / "python" / "duckdb_models.py"
WRK = harness.ROOT / "benches" / "wrk"
TIMEZONES = {"python-camp": "Asia/Shanghai", "data-circle": "America/New_York"}
TOKEN = "bench-token"

DUCKDB_IMPORT = r"""
import sys, duckdb
src, out = sys.argv[1], sys.argv[2]
con = duckdb.connect()
con.execute("SET threads = 2; SET TimeZone = 'UTC'; SET preserve_insertion_order = false")
types = "['join','leave','post','comment','like','share','cite','solution','checkin','attend','view','purchase','refund','report','warn','ban','unban']"
con.execute(f'''
COPY (
  WITH raw AS (
    SELECT * FROM read_json('{src}', format = 'newline_delimited', columns = {{
      event_id: 'VARCHAR', source: 'VARCHAR', community_id: 'VARCHAR', member_id: 'VARCHAR',
      event_type: 'VARCHAR', occurred_at: 'VARCHAR', received_at: 'VARCHAR', content_id: 'VARCHAR',
      parent_id: 'VARCHAR', target_member_id: 'VARCHAR', title: 'VARCHAR', body: 'VARCHAR',
      amount_minor: 'BIGINT', currency: 'VARCHAR', properties: 'VARCHAR'}})
  ),
  typed AS (
    SELECT *, TRY_CAST(occurred_at AS TIMESTAMPTZ) AS occurred, TRY_CAST(received_at AS TIMESTAMPTZ) AS received
    FROM raw
  ),
  valid AS (
    SELECT * FROM typed
    WHERE coalesce(event_id, '') <> '' AND coalesce(source, '') <> '' AND coalesce(community_id, '') <> ''
      AND coalesce(member_id, '') <> '' AND list_contains({types}, event_type)
      AND occurred IS NOT NULL AND regexp_matches(occurred_at, '(Z|[+-][0-9][0-9]:[0-9][0-9])$')
      AND (received_at IS NULL OR received IS NOT NULL)
      AND coalesce(amount_minor, 0) >= 0
  ),
  deduped AS (
    SELECT * FROM valid
    QUALIFY row_number() OVER (PARTITION BY community_id, source, event_id ORDER BY coalesce(received, now())) = 1
  )
  SELECT event_id, source, member_id, event_type, occurred AS occurred_at,
         coalesce(received, now()) AS received_at, content_id, parent_id, target_member_id, title, body,
         amount_minor, currency, properties, community_id, CAST(occurred AS DATE) AS event_date
  FROM deduped
  ORDER BY member_id, occurred_at
) TO '{out}' (FORMAT parquet, PARTITION_BY (community_id, event_date), COMPRESSION zstd)
''')
"""

SLICE_BY_15_MINUTES = r"""
import datetime as dt, json, os, sys
src, out = sys.argv[1], sys.argv[2]
os.makedirs(out)
buckets = {}
with open(src, "rb") as f:
    for line in f:
        at = dt.datetime.fromisoformat(json.loads(line)["occurred_at"])
        buckets.setdefault(int(at.timestamp()) // 900, []).append(line)
for i, key in enumerate(sorted(buckets)):
    with open(os.path.join(out, f"{i:05}.ndjson"), "wb") as f:
        f.writelines(buckets[key])
"""


def median_of(runs, measure):
    """Run `measure()` `runs` times: the median seconds and the median peak RSS (MiB)."""
    results = [measure() for _ in range(runs)]
    return statistics.median(r[0] for r in results), statistics.median(r[1] for r in results)


def fresh(path):
    shutil.rmtree(path, ignore_errors=True)
    return path


def row(what, events, pulse, duck=None, note=""):
    """One table row: pulse (seconds, RSS) against DuckDB (seconds, RSS) on `events` events."""
    p_sec, p_rss = pulse
    cells = [what, f"{events:,}", f"{p_sec:.2f} s", f"{events / p_sec:,.0f}", f"{p_rss:,.0f} MiB"]
    if duck:
        d_sec, d_rss = duck
        cells += [f"{d_sec:.2f} s", f"{events / d_sec:,.0f}", f"{d_rss:,.0f} MiB", f"{d_sec / p_sec:.2f}×"]
    else:
        cells += ["—"] * 4
    print("| " + " | ".join(cells + [note]) + " |", flush=True)


def bench_import(size, work, runs, duckdb):
    src = harness.events_file(size, work)
    n = harness.count_lines(src)
    lake = work / f"lake-{size}"
    # Every run writes a directory of its own, and they are removed after the row: ext4 without
    # a journal (as on the VM of docs/benchmarks.md) walks past every inode freed in the last
    # ~30 s each time it creates one, so removing one run's 1,464 files and directories right
    # before the next made that run's creates several times slower, for both tools alike.
    outputs = []

    def output(name):
        path = work / f"{name}.run{len(outputs)}"
        outputs.append(path)
        return fresh(path)  # only a leftover of an interrupted benchmark is removed here

    pulse_cmd = lambda prefix=(): [*prefix, str(harness.PULSE), "-q", "--lake", str(output(f"lake-{size}")),
                                   "import", str(src)]
    pulse = median_of(runs, lambda: harness.run_measured(pulse_cmd())[:2])
    kept = outputs[-1]  # the last run's lake stays for the daily run
    duck = duckdb and median_of(runs, lambda: harness.run_measured(
        [sys.executable, "-c", DUCKDB_IMPORT, str(src), str(output(f"duck-{size}"))])[:2])
    note = f"{src.stat().st_size / 2**20:,.0f} MiB NDJSON"
    if shutil.which("eatmydata"):
        unsynced = harness.run_measured(pulse_cmd(["eatmydata"]))[0]
        note += f"; one run without fsync (eatmydata): {unsynced:.2f} s"
    fresh(lake)
    kept.rename(lake)
    for path in outputs:
        if path != kept:
            shutil.rmtree(path, ignore_errors=True)
    row(f"import {size}", n, pulse, duck, note)
    return n


def bench_daily(size, work, runs, memory_limit, duckdb, lake=None):
    if lake is None:
        src = harness.events_file(size, work)
        n = harness.count_lines(src)
        lake = work / f"lake-{size}"
        if not (lake / "events").exists():
            harness.run_measured([str(harness.PULSE), "-q", "--lake", str(lake), "import", str(src)])
    else:
        n = 100_000_000  # bench_history's lake: ten chunks of 10M valid, distinct events
    run = daily_runner(work, lake, memory_limit)
    for derived in ["rollups", "metrics", "reports"]:
        shutil.rmtree(lake / derived, ignore_errors=True)
    cold = run(harness.END)  # builds the rollups of the whole history once
    next_day = (dt.date.fromisoformat(harness.END) + dt.timedelta(days=1)).isoformat()
    pulse = median_of(runs, lambda: run(next_day))
    duck_out = work / f"duck-metrics-{size}"
    duck = duckdb and median_of(runs, lambda: harness.run_measured(
        [sys.executable, str(DUCKDB_MODELS), str(lake), str(harness.ROOT / "queries"), next_day,
         str(fresh(duck_out)), json.dumps(TIMEZONES)])[:2])
    row(f"daily run {size}", n, pulse, duck, f"first run (rollups of the whole history) {cold[0]:.1f} s")


def daily_runner(work, lake, memory_limit, extra=""):
    """A function running `pulse run --as-of D` over `lake` (the two generated communities, no
    email): it returns (seconds, peak RSS MiB)."""
    config = work / "pulse-bench.toml"
    engine = f'[engine]\nmemory_limit = "{memory_limit}"\n' if memory_limit else ""
    config.write_text(
        f'state_dir = "{work / "state"}"\n' + engine
        + "".join(f'[[communities]]\nid = "{c}"\ntimezone = "{tz}"\n' for c, tz in TIMEZONES.items())
        + extra
    )
    return lambda as_of: harness.run_measured(
        [str(harness.PULSE), "-q", "--config", str(config), "--lake", str(lake), "run", "--as-of", as_of])[:2]


def bench_compaction(work, runs):
    """Small-file rot (issue 20): three weeks of generated events (the 10m members, 21 days)
    imported as a lake fed every 15 minutes gets them, one `pulse import` per 15 minutes of
    `occurred_at` (~2,070 imports: the local days of two time zones span more than 21 UTC days;
    each import adds a file to every partition it touches); then, with automatic compaction
    off, the daily run; `pulse compact`; the daily run again. The
    first run after compaction recomputes the rollups of the compacted months (their file
    names changed), so "daily" is the median of the runs after it, before and after. One more
    15-minute import into a copy of the lake is timed before and after, too: every import reads
    the lake's stored keys, file by file."""
    src = work / "events-3w.ndjson"
    if not src.exists():
        harness.run_measured([str(harness.PULSE), "generate", "--members", "175000", "--days", "21",
                              "--communities", "2", "--seed", "7", "--end", harness.END, "--out", str(src)])
    slices = work / "slices-3w"
    if not (slices / "done").exists():
        # In a child: this process's heap would otherwise be every later child's starting peak
        # RSS (a forked child's ru_maxrss counts the parent's pages it began with).
        subprocess.run([sys.executable, "-c", SLICE_BY_15_MINUTES, str(src), str(fresh(slices))], check=True)
        (slices / "done").touch()
    files = sorted(slices.glob("*.ndjson"))
    *history, last = files
    n = harness.count_lines(src)
    lake = fresh(work / "lake-3w")
    start = time.perf_counter()
    peak = max(import_into(lake, path)[1] for path in history)
    build = time.perf_counter() - start
    parquet = lambda: sum(1 for _ in (lake / "events").rglob("*.parquet"))
    before_files = parquet()
    row(f"{len(history):,} small imports (15 minutes each)", n - harness.count_lines(last), (build, peak),
        note=f"{before_files:,} event files, {build / len(history) * 1000:.0f} ms per import")

    one_more_import = lambda: import_into_copy(lake, last, work / "lake-3w-copy")
    last_n = harness.count_lines(last)
    next_day = (dt.date.fromisoformat(harness.END) + dt.timedelta(days=1)).isoformat()
    run = daily_runner(work, lake, None, "[compaction]\nmax_files = 0\n")
    for when in ["before", "after"]:
        if when == "after":
            compact = harness.run_measured([str(harness.PULSE), "-q", "--config", str(work / "pulse-bench.toml"),
                                            "--lake", str(lake), "compact"])[:2]
            row("pulse compact", n - last_n, compact, note=f"{before_files:,} → {parquet():,} event files")
        row(f"one more 15-minute import, {when} compaction", last_n, median_of(runs, one_more_import))
        first = run(next_day)
        daily = median_of(runs, lambda: run(next_day))
        note = (f"first run ({'rollups of the whole history' if when == 'before' else 'compacted months recomputed'})"
                f" {first[0]:.1f} s")
        row(f"daily run, {when} compaction", n - last_n, daily, note=note)


def bench_history(work, runs, memory_limit, only):
    """Memory at any history (issue 20): 10M new events imported into a lake of 100M (each run
    into a hard-linked copy: an import adds and renames files, it never changes one), and the
    daily run over those 100M. The generator's 110M events (~24 GB of NDJSON) stream through
    `split`, one 10M-line chunk on disk at a time: ten build the lake, the eleventh is kept as
    the measured import."""
    base, nxt = work / "lake-100m", work / "events-100m-next.ndjson"
    if not (base / "built").exists() or not nxt.exists():
        fresh(base)
        chunk = work / "chunk.ndjson"
        # x00…x09 build the lake, x10 is kept, the generator's overshoot past 110M is dropped.
        script = (f'case "$FILE" in x0?) cat > {chunk} && {harness.PULSE} -q --lake {base} import {chunk} '
                  f'>&2 && rm {chunk} ;; x10) cat > {nxt} ;; *) cat > /dev/null ;; esac')
        print("building the 100M lake (about 20 minutes) ...", file=sys.stderr, flush=True)
        subprocess.run(f"{harness.PULSE} -q generate {' '.join(harness.SIZES['110m'])} --seed 7 "
                       f"--end {harness.END} --out - | split -l 10000000 -d --filter '{script}'",
                       shell=True, check=True, cwd=work)
        (base / "built").touch()
    if "import" in only:
        bench_import_into(base, nxt, work, runs)
    if "daily" in only:
        bench_daily("100m", work, runs, memory_limit, False, lake=base)


def bench_import_into(base, nxt, work, runs):
    """`nxt` imported into a hard-linked copy of the lake `base`, `runs` times."""
    n = harness.count_lines(nxt)
    row("import 10M into a lake of 100M", n,
        median_of(runs, lambda: import_into_copy(base, nxt, work / "lake-100m-run")))


def import_into(lake, path):
    """`pulse import path` into `lake`: (seconds, peak RSS MiB)."""
    return harness.run_measured([str(harness.PULSE), "-q", "--lake", str(lake), "import", str(path)])[:2]


def import_into_copy(base, path, copy):
    """`path` imported into `copy`, a hard-linked copy of the lake `base` (an import adds and
    renames files, it never changes one, so `base` stays as it was); `copy` is removed after."""
    fresh(copy)
    subprocess.run(["cp", "-al", str(base), str(copy)], check=True)
    measured = import_into(copy, path)
    shutil.rmtree(copy)
    return measured


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_wrk(text):
    """Requests/s, p99 latency in ms and non-2xx answers from `wrk --latency` output."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    p99, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", text).groups()
    p99_ms = float(p99) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(r"Socket errors:.*", text)
    return rps, p99_ms, int(bad.group(1)) if bad else 0, errors.group(0) if errors else ""


def bench_intake(work, runs, seconds):
    if not shutil.which("wrk"):
        print("| intake | wrk is not installed (apt-get install wrk) | | | | | | | | |", flush=True)
        return
    # Batches twice: 8 connections keep pulse busy (the most events/s); 4 give about the
    # goal's 500,000 events/s, so their p99 is the latency at that rate (wrk sends as fast as
    # answers come, so fewer connections is how it asks for a lower rate).
    for mode, script, connections, per_request in [
        ("single", "single.lua", 64, 1),
        ("batched", "batch.lua", 8, 500),
        ("batched", "batch.lua", 4, 500),
    ]:
        results, rss = [], []
        for _ in range(runs):
            home = fresh(work / "intake")
            home.mkdir(parents=True)
            port = free_port()
            (home / "pulse.toml").write_text(
                f'lake = "lake"\nstate_dir = "state"\n[[communities]]\nid = "bench"\n'
                f'[ingest]\nlisten = "127.0.0.1:{port}"\ntoken_env = "PULSE_BENCH_TOKEN"\n'
                'spool_max_bytes = "64GiB"\n'
            )
            env = {**os.environ, "PULSE_BENCH_TOKEN": TOKEN}
            log = open(home / "serve.log", "wb")  # a file: a pipe nobody reads could stall the server
            serve = subprocess.Popen([str(harness.PULSE), "-q", "--config", "pulse.toml", "serve"], cwd=home,
                                     env=env, stdout=subprocess.DEVNULL, stderr=log)
            deadline = time.time() + 30
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
                    break
                except OSError:
                    if time.time() > deadline or serve.poll() is not None:
                        sys.exit(f"pulse serve did not start: {(home / 'serve.log').read_text()[-2000:]}")
                    time.sleep(0.1)
            out = subprocess.run(
                ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(WRK / script),
                 f"http://127.0.0.1:{port}"],
                env=env, capture_output=True, text=True, check=True).stdout
            results.append(parse_wrk(out))
            serve.send_signal(signal.SIGTERM)
            _, _, usage = os.wait4(serve.pid, 0)
            log.close()
            rss.append(usage.ru_maxrss / 1024)
        rps = statistics.median(r[0] for r in results)
        p99 = statistics.median(r[1] for r in results)
        bad = sum(r[2] for r in results)
        errors = "; ".join(sorted({r[3] for r in results if r[3]}))
        events = rps * per_request * seconds
        note = (f"{rps:,.0f} requests/s, p99 {p99:.1f} ms (runs: "
                + ", ".join(f"{r[1]:.1f}" for r in results) + f" ms), non-2xx {bad}"
                + (f", {errors}" if errors else ""))
        row(f"intake {mode}, {connections} connections ({seconds} s)", int(events), (seconds, statistics.median(rss)),
            None, note)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # 110m is only the generator setting bench_history streams from (100M + the 10M to import).
    parser.add_argument("--sizes", nargs="*", default=["1m", "10m"], choices=sorted(set(harness.SIZES) - {"110m"}))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="import,daily,intake")
    parser.add_argument("--intake-seconds", type=int, default=60)
    parser.add_argument("--memory-limit", help="engine.memory_limit for the daily run, e.g. 2GiB")
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "pulse-bench"))
    parser.add_argument("--no-build", action="store_true", help="use the release binary as it is")
    parser.add_argument("--no-duckdb", action="store_true", help="measure pulse only (100m)")
    args = parser.parse_args()
    only = set(args.only.split(","))
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    if not args.no_build:
        harness.build()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=harness.ROOT, capture_output=True,
                            text=True).stdout.strip()
    print(f"{dt.date.today()}, commit {commit}, {os.cpu_count()} cores, median of {args.runs} runs: "
          f"`scripts/bench {' '.join(sys.argv[1:])}`\n")
    print("| what | events | pulse | events/s | peak RSS | DuckDB | events/s | peak RSS | DuckDB time ÷ pulse time | notes |")
    print("|---|---|---|---|---|---|---|---|---|---|", flush=True)
    for size in args.sizes:
        if size == "100m":
            bench_history(work, args.runs, args.memory_limit, only)
            continue
        if "import" in only:
            bench_import(size, work, args.runs, not args.no_duckdb)
        if "daily" in only:
            bench_daily(size, work, args.runs, args.memory_limit, not args.no_duckdb)
    if "intake" in only:
        bench_intake(work, args.runs, args.intake_seconds)
    if "compaction" in only:
        bench_compaction(work, args.runs)


if __name__ == "__main__":
    main()
