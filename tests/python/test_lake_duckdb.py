"""An independent reader: DuckDB reads the lake pulse wrote and agrees on every value."""
import csv
import io

import duckdb

# One line of text per event covering every column, rendered the same way in both engines.
COLUMNS = [
    "event_id", "source", "community_id", "member_id", "event_type",
    "TS(occurred_at)", "TS(received_at)", "content_id", "parent_id", "target_member_id",
    "title", "body", "CAST(amount_minor AS VARCHAR)", "currency", "properties", "CAST(event_date AS VARCHAR)",
]


def row_text(micros: str) -> str:
    """`micros` renders a timestamp column as integer microseconds, e.g. "epoch_us({})"."""
    def render(c):
        if c.startswith("TS("):
            c = micros.format(c[3:-1])
        return f"coalesce(CAST({c} AS VARCHAR), '~')"
    return " || '|' || ".join(render(c) for c in COLUMNS)


def checksum_sql(micros: str) -> str:
    return (
        f"SELECT count(*) AS n, md5(string_agg({row_text(micros)}, chr(10) ORDER BY source, event_id)) AS h "
        f"FROM events"
    )


def pulse_csv(pulse, sql):
    out = pulse("query", "--format", "csv", sql).stdout
    return list(csv.DictReader(io.StringIO(out)))


def test_duckdb_reads_the_lake_with_hive_partitioning(pulse, tmp_path):
    data = tmp_path / "community.ndjson"
    pulse("generate", "--members", "600", "--days", "45", "--communities", "2", "--seed", "5",
          "--end", "2026-11-23", "--out", data)
    pulse("import", data)

    glob = str(tmp_path / "lake" / "events" / "**" / "*.parquet")
    con = duckdb.connect()
    con.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet('{glob}', hive_partitioning = true)")

    types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE events)").fetchall())
    assert types["occurred_at"] == "TIMESTAMP WITH TIME ZONE"
    assert types["amount_minor"] == "BIGINT"
    assert types["event_date"] == "DATE"
    assert types["community_id"] == "VARCHAR"

    # DataFusion casts a µs timestamp to its integer microseconds; DuckDB has epoch_us.
    ours = pulse_csv(pulse, checksum_sql("CAST({} AS BIGINT)"))[0]
    theirs = con.execute(checksum_sql("epoch_us({})")).fetchone()
    assert int(ours["n"]) > 5_000
    assert int(ours["n"]) == theirs[0]
    assert ours["h"] == theirs[1]

    # Aggregates growth teams run agree too.
    sql = "SELECT community_id, event_type, count(*) AS n FROM events GROUP BY 1, 2 ORDER BY 1, 2"
    ours = [(r["community_id"], r["event_type"], int(r["n"])) for r in pulse_csv(pulse, sql)]
    assert ours == con.execute(sql).fetchall()


def test_duckdb_sees_nothing_half_written_after_a_killed_import(pulse, tmp_path):
    """Staging files are invisible to the usual glob, so readers only ever see whole files."""
    data = tmp_path / "community.ndjson"
    pulse("generate", "--members", "300", "--days", "20", "--seed", "9", "--end", "2026-11-23", "--out", data)
    staging = tmp_path / "lake" / "_staging" / "import-x"
    staging.mkdir(parents=True)
    (staging / "c1-2026-11-01-part-0.parquet").write_bytes(b"PAR1 truncated")
    pulse("import", data)
    glob = str(tmp_path / "lake" / "events" / "**" / "*.parquet")
    n = duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{glob}', hive_partitioning = true)").fetchone()[0]
    assert str(n) == pulse_csv(pulse, "SELECT count(*) AS n FROM events")[0]["n"]
