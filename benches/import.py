"""Import benchmark: `pulse import` against DuckDB doing the same NDJSON → Parquet job.

Usage: python benches/import.py [1m|10m ...] [--workdir DIR]
Needs the release build (built here) and DuckDB's Python package (scripts/test installs it in
~/.cache/pulse-venv; run this with that venv's python).

Both sides: validate (required fields non-empty, known event_type, timestamps with an offset,
non-negative amounts), dedupe on (community_id, source, event_id) keeping the earliest received,
write zstd Parquet in the Hive layout community_id=/event_date= (UTC), sorted by member then time.
"""
import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import harness

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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("sizes", nargs="*", default=["1m"])
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "pulse-bench"))
    args = parser.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    harness.build()
    print("| events | file | pulse import | events/s | peak RSS | DuckDB | events/s | peak RSS | speed-up |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        src = harness.events_file(size, work)
        n = harness.count_lines(src)
        mib = src.stat().st_size / 2**20
        lake = work / f"lake-{size}"
        shutil.rmtree(lake, ignore_errors=True)
        p_sec, p_rss, out = harness.run_measured([str(harness.PULSE), "-q", "--lake", str(lake), "import", str(src)])
        duck_out = work / f"duck-{size}"
        shutil.rmtree(duck_out, ignore_errors=True)
        d_sec, d_rss, _ = harness.run_measured([sys.executable, "-c", DUCKDB_IMPORT, str(src), str(duck_out)])
        print(
            f"| {n:,} | {mib:,.0f} MiB | {p_sec:.1f} s | {n / p_sec:,.0f} | {p_rss:,.0f} MiB "
            f"| {d_sec:.1f} s | {n / d_sec:,.0f} | {d_rss:,.0f} MiB | {d_sec / p_sec:.1f}× |",
            flush=True,
        )
        print(f"<!-- pulse: {out.strip()} -->", flush=True)


if __name__ == "__main__":
    main()
