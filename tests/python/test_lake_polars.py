"""The README's Polars snippet, run for real: Polars reads the lake with hive partitioning and
agrees with `pulse query`."""
import csv
import io

import polars as pl


def test_polars_reads_events_and_metrics(pulse, tmp_path):
    data = tmp_path / "c.ndjson"
    pulse("generate", "--members", "200", "--days", "40", "--seed", "11", "--end", "2026-11-23", "--out", data)
    pulse("import", data)
    pulse("run", "--as-of", "2026-11-23")
    lake = tmp_path / "lake"

    # README snippet (Polars):
    events = pl.scan_parquet(f"{lake}/events/**/*.parquet", hive_partitioning=True)
    by_type = events.group_by("event_type").len().sort("event_type").collect()
    ranked = (
        pl.scan_parquet(f"{lake}/metrics/ranked_members/**/*.parquet", hive_partitioning=True)
        .filter(pl.col("as_of") == pl.date(2026, 11, 23))
        .sort("rank")
        .collect()
    )

    ours = list(csv.DictReader(io.StringIO(pulse(
        "query", "--format", "csv",
        "SELECT event_type, count(*) AS n FROM events GROUP BY 1 ORDER BY 1").stdout)))
    assert [(r["event_type"], int(r["n"])) for r in ours] == list(zip(by_type["event_type"], by_type["len"]))
    top = list(csv.DictReader(io.StringIO(pulse(
        "query", "--format", "csv", "SELECT member_id FROM ranked_members ORDER BY rank").stdout)))
    assert [r["member_id"] for r in top] == ranked["member_id"].to_list()
    assert events.collect_schema()["occurred_at"] == pl.Datetime("us", "UTC")
