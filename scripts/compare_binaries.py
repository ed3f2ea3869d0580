#!/usr/bin/env python3
"""Compare two pulse binaries on the same input: every metric table must be equal.

For refactors that must not change a number (a restructure, a dependency upgrade):

    python3 scripts/compare_binaries.py OLD_PULSE NEW_PULSE [--members 400 --days 90]

Generates one community file with NEW_PULSE, imports it and runs the same as_of with each
binary into its own lake, then reads every metric table of both lakes with DuckDB (an
independent reader) and compares them row by row (floats to 1e-9). Prints one line per table
and exits 1 on the first difference. Needs the duckdb Python package (tests/python/requirements.txt).
"""
import argparse
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import duckdb

TABLES = ["member_activity", "member_influence", "community_influence", "retention_cohorts",
          "demand_categories", "ranked_members", "kpis", "membership", "revenue_cohorts",
          "tier_transitions", "top_content", "category_health", "emerging_terms"]


def run(binary, lake, *args):
    subprocess.run([binary, "--quiet", "--lake", str(lake), *args], check=True,
                   stdout=subprocess.DEVNULL)


def rows(lake, table):
    con = duckdb.connect()
    rel = con.sql(f"SELECT * FROM read_parquet('{lake}/metrics/{table}/**/*.parquet', "
                  "hive_partitioning = true)")
    cols = rel.columns
    return cols, sorted(rel.fetchall(), key=lambda r: [str(v) for v in r])


def same(a, b):
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9) or (math.isnan(a) and math.isnan(b))
    return a == b


def main():
    p = argparse.ArgumentParser()
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--members", default="400")
    p.add_argument("--days", default="90")
    p.add_argument("--as-of", default="2026-11-23")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        events = tmp / "events.ndjson"
        subprocess.run([a.new, "generate", "--members", a.members, "--days", a.days,
                        "--communities", "2", "--end", a.as_of, "--out", str(events)], check=True)
        for name, binary in (("old", a.old), ("new", a.new)):
            work = tmp / name
            work.mkdir()
            run(binary, work / "lake", "import", str(events))
            run(binary, work / "lake", "run", "--as-of", a.as_of)
        failed = False
        for table in TABLES:
            (cols_old, old), (cols_new, new) = rows(tmp / "old" / "lake", table), rows(tmp / "new" / "lake", table)
            equal = cols_old == cols_new and len(old) == len(new) and all(
                len(r) == len(s) and all(same(x, y) for x, y in zip(r, s)) for r, s in zip(old, new))
            print(f"{table:22} {len(old):6} rows  {'equal' if equal else 'DIFFERENT'}")
            failed |= not equal
        sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
