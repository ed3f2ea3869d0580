"""The same models on two engines: pulse (DataFusion, Rust UDFs, Rust PageRank) and DuckDB
(ICU timezones, macros, numpy PageRank) must agree on every metric table, value for value."""
import json
import math
import subprocess
import sys
from pathlib import Path

import duckdb

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
TIMEZONES = {"python-camp": "Asia/Shanghai", "data-circle": "America/New_York"}
TERM_DAYS = 30
KEYS = {
    "member_activity": "member_id",
    "member_influence": "member_id",
    "community_influence": "size_total",
    "retention_cohorts": "cohort_start, period_offset",
    "demand_categories": "taxonomy, category",
    "ranked_members": "rank",
    "kpis": "metric",
    "membership": "member_id",
    "revenue_cohorts": "cohort_start, currency, period_offset",
    "tier_transitions": "from_tier NULLS FIRST, to_tier",
    "top_content": "rank",
    "category_health": "taxonomy, category",
}


def same(x, y):
    if isinstance(x, float) or isinstance(y, float):
        if x is None or y is None:
            return x is None and y is None
        return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12)
    return x == y


def test_duckdb_computes_the_same_metric_tables(pulse, tmp_path):
    as_of = "2026-11-23"
    (tmp_path / "config").mkdir()
    # Monthly terms, so the generated renewals (every 30 days, or not) make spells, grace,
    # lapses and renewals due in both windows.
    (tmp_path / "config" / "pulse.toml").write_text(
        f"[defaults]\nmembership = {{ term_days = {TERM_DAYS} }}\n"
        + "".join(f'[[communities]]\nid = "{c}"\ntimezone = "{tz}"\n' for c, tz in TIMEZONES.items())
    )
    data = tmp_path / "community.ndjson"
    pulse("generate", "--members", "700", "--days", "150", "--communities", "2", "--seed", "21", "--end", as_of, "--out", data)
    pulse("import", data)
    pulse("run", "--as-of", as_of)
    out = tmp_path / "duck"
    subprocess.run(
        [sys.executable, HERE / "duckdb_models.py", tmp_path / "lake", ROOT / "queries", as_of, out, json.dumps(TIMEZONES),
         json.dumps({"term_days": TERM_DAYS})],
        check=True, capture_output=True,
    )
    con = duckdb.connect()
    compared = 0
    for table, key in KEYS.items():
        for community in TIMEZONES:
            ours_rel = con.execute(
                f"SELECT * EXCLUDE (community_id, as_of) FROM read_parquet('{tmp_path}/lake/metrics/{table}/**/*.parquet', "
                f"hive_partitioning = true) WHERE community_id = ? AND as_of = DATE '{as_of}' ORDER BY {key}",
                [community],
            )
            ours = ours_rel.fetchall()
            columns = [d[0] for d in ours_rel.description]
            theirs_rel = con.execute(f"SELECT * FROM read_parquet('{out}/{table}-{community}.parquet') ORDER BY {key}")
            theirs = theirs_rel.fetchall()
            assert columns == [d[0] for d in theirs_rel.description], table
            assert len(ours) == len(theirs), (table, community)
            assert len(ours) > 0, (table, community)
            for a, b in zip(ours, theirs):
                for column, x, y in zip(columns, a, b):
                    assert same(x, y), (table, community, a[0], column, x, y)
            compared += len(ours)
    assert compared > 3000
