"""Run pulse's SQL models (`queries/{rollups,intermediate,marts}/*.sql`) on DuckDB: an
independent engine for the same models.

python duckdb_models.py LAKE QUERIES_DIR AS_OF OUT_DIR ['{"community": "IANA/Zone"}'] ['{"term_days": 30}']

The optional last argument overrides `[defaults] membership` keys (term_days, grace_days) as
pulse's config does for every community.

The four functions pulse adds to DataFusion are one-line DuckDB macros, `$name` parameters are
DuckDB named parameters, the parameter tables are built from config/pulse.example.toml's
defaults, and PageRank (Rust in pulse) is numpy here. DuckDB computes the rollups over the whole
history. Writes OUT_DIR/<table>-<community>.parquet for every metric table. Used by
tests/python/test_models_duckdb.py (the same numbers from two engines) and benches/bench.py (the daily-run comparison).
"""
import datetime as dt, json, re, sys
from pathlib import Path
from zoneinfo import ZoneInfo
import duckdb, numpy as np

lake, queries, as_of, out = Path(sys.argv[1]), Path(sys.argv[2]), dt.date.fromisoformat(sys.argv[3]), Path(sys.argv[4])
# community id → IANA timezone (pulse's config); communities not named run in UTC, as in pulse.
tz_of = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
con = duckdb.connect()
con.execute("SET threads = 2; SET TimeZone = 'UTC'")
con.execute('''
CREATE MACRO local_date(ts, tz) AS CAST(timezone(tz, ts) AS DATE);
CREATE MACRO period_start(d, g) AS CAST(date_trunc(g, d) AS DATE);
CREATE MACRO periods_between(a, b, g) AS
    CASE WHEN g = 'month' THEN datediff('month', date_trunc('month', a), date_trunc('month', b))
         ELSE datediff('week', date_trunc('week', a), date_trunc('week', b)) END;
CREATE MACRO days_between(a, b) AS datediff('day', a, b);
CREATE MACRO from_epoch_us(us) AS CAST(make_timestamp(us) AS TIMESTAMPTZ);
-- min_by_keys / max_by_keys: rows with a NULL key are skipped, as in pulse.
CREATE MACRO min_by_keys(v, a) AS arg_min(v, CASE WHEN a IS NULL THEN NULL ELSE row(a, v) END),
    (v, a, b) AS arg_min(v, CASE WHEN a IS NULL OR b IS NULL THEN NULL ELSE row(a, b, v) END),
    (v, a, b, c) AS arg_min(v, CASE WHEN a IS NULL OR b IS NULL OR c IS NULL THEN NULL ELSE row(a, b, c, v) END),
    (v, a, b, c, d) AS arg_min(v, CASE WHEN a IS NULL OR b IS NULL OR c IS NULL OR d IS NULL THEN NULL ELSE row(a, b, c, d, v) END);
CREATE MACRO max_by_keys(v, a) AS arg_max(v, CASE WHEN a IS NULL THEN NULL ELSE row(a, v) END),
    (v, a, b) AS arg_max(v, CASE WHEN a IS NULL OR b IS NULL THEN NULL ELSE row(a, b, v) END),
    (v, a, b, c) AS arg_max(v, CASE WHEN a IS NULL OR b IS NULL OR c IS NULL THEN NULL ELSE row(a, b, c, v) END),
    (v, a, b, c, d) AS arg_max(v, CASE WHEN a IS NULL OR b IS NULL OR c IS NULL OR d IS NULL THEN NULL ELSE row(a, b, c, d, v) END);
''')  # epoch_us(ts) is built into DuckDB
con.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet('{lake}/events/**/*.parquet', hive_partitioning = true)")
communities = [r[0] for r in con.execute("SELECT DISTINCT community_id FROM events ORDER BY 1").fetchall()]

def sql_params(sql, params):
    code = "\n".join(line.split("--", 1)[0] for line in sql.splitlines())
    names = set(re.findall(r"\$(\w+)", code))
    return {k: v for k, v in params.items() if k in names}

def reads(sql):
    """Names after FROM or JOIN in `sql` (comments dropped), less its CTE names (`name AS (`):
    a superset of the tables it reads. (member_state has a CTE named like the membership mart.)"""
    code = "\n".join(line.split("--", 1)[0] for line in sql.splitlines())
    ctes = set(re.findall(r"\b([a-z_][a-z0-9_]*)\s+AS\s*\(", code, re.IGNORECASE))
    return set(re.findall(r"\b(?:from|join)\s+([a-z_][a-z0-9_]*)", code, re.IGNORECASE)) - ctes


def models():
    """queries/intermediate/ and queries/marts/ (and PageRank), each after the models it reads."""
    found = {}
    # post_terms (jieba segmentation: the post_words rollup, then term_candidates and
    # emerging_terms) is Rust-only: DuckDB has no jieba. Models reading a Rust-only table are
    # left out too.
    rust_only = {"post_words"}
    for path in sorted([*queries.glob("intermediate/*.sql"), *queries.glob("marts/*.sql")]):
        sql = path.read_text()
        if "post_terms(" in sql or reads(sql) & rust_only:
            rust_only.add(path.stem)
        else:
            found[path.stem] = sql
    deps = {name: sorted(reads(sql) & (set(found) | {"pagerank"}) - {name}) for name, sql in found.items()}
    found["pagerank"], deps["pagerank"] = None, ["pagerank_edges"]
    order, done = [], set()
    while len(order) < len(found):
        ready = [n for n in sorted(found) if n not in done and all(d in done for d in deps[n])]
        assert ready, f"models depend on each other in a cycle: {sorted(set(found) - done)}"
        for name in ready:
            order.append(name); done.add(name)
    return [(n, found[n]) for n in order]

METRICS = {path.stem for path in queries.glob("marts/*.sql")} & {name for name, _ in models()}
WINDOW = 30
points = [("post", 10, 5), ("comment", 3, 20), ("solution", 15, 5), ("like", 1, 30), ("share", 2, 10),
          ("cite", 2, 10), ("checkin", 5, 1), ("attend", 10, 3)]
con.execute("CREATE TABLE p_points(event_type VARCHAR, weight DOUBLE, daily_cap BIGINT)")
con.executemany("INSERT INTO p_points VALUES (?, ?, ?)", points)
con.execute("CREATE TABLE p_active_types AS SELECT unnest(['post','comment','like','share','cite','solution','checkin','attend']) AS event_type")
con.execute("CREATE TABLE p_excluded(member_id VARCHAR)")
con.execute("CREATE TABLE p_product_terms(product VARCHAR, term_days BIGINT)")
con.execute("CREATE TABLE p_stopwords(word VARCHAR)")
# Pulse carries check-in streaks forward month by month (models::streaks); here they are
# computed from the whole history: an empty state before 1970 and every day after it.
con.execute("CREATE TABLE checkin_state(member_id VARCHAR, checkin_streak BIGINT, longest_checkin_streak BIGINT)")
membership = {"term_days": 365, "grace_days": 7, **(json.loads(sys.argv[6]) if len(sys.argv) > 6 else {})}
TERM_DAYS, GRACE_DAYS, DAY_US = membership["term_days"], membership["grace_days"], 86_400_000_000
import tomllib
tax = tomllib.loads((queries.parent / "config" / "pulse.example.toml").read_text())["taxonomies"]
con.execute("CREATE TABLE p_categories(taxonomy VARCHAR, category VARCHAR)")
con.execute("CREATE TABLE p_keywords(taxonomy VARCHAR, category VARCHAR, keyword VARCHAR)")
for t in tax:
    for c in t["categories"]:
        con.execute("INSERT INTO p_categories VALUES (?, ?)", [t["name"], c["name"]])
        con.executemany("INSERT INTO p_keywords VALUES (?, ?, ?)", [[t["name"], c["name"], k.lower()] for k in c["keywords"]])

def midnight(day, tz):
    return dt.datetime.combine(day, dt.time(), ZoneInfo(tz)).astimezone(dt.timezone.utc)

out.mkdir(parents=True, exist_ok=True)
def window_params(community, tz, as_of):
    w_start, wp_start = as_of - dt.timedelta(days=WINDOW), as_of - dt.timedelta(days=2 * WINDOW)
    wpp_start = as_of - dt.timedelta(days=3 * WINDOW)
    params = {
        "community": community, "tz": tz, "as_of": as_of, "last_day": as_of - dt.timedelta(days=1),
        "as_of_month": as_of.replace(day=1), "as_of_month_scan_from": as_of.replace(day=1) - dt.timedelta(days=1),
        "w_start": w_start, "wp_start": wp_start, "wpp_start": wpp_start, "as_of_ts": midnight(as_of, tz), "w_start_ts": midnight(w_start, tz),
        "wp_start_ts": midnight(wp_start, tz), "w_scan_from": w_start - dt.timedelta(days=1),
        "wp_scan_from": wp_start - dt.timedelta(days=1), "wpp_scan_from": wpp_start - dt.timedelta(days=1), "scan_to": as_of, "window_days": WINDOW, "percentile": False,
        "weight_participation": 0.5, "weight_interaction": 0.3, "weight_contribution": 0.1, "weight_retention": 0.1,
        "contributor_min_contribution": 10, "active_min_days": 8, "at_risk_prev_min_days": 8, "top_n": 100,
        "cohort_periods": 12, "grain": "month", "from_date": dt.date(1970, 1, 1), "to_date": dt.date(2100, 1, 1),
        "term_days": TERM_DAYS, "grace_days": GRACE_DAYS, "horizon_days": 30,
        "term_us": TERM_DAYS * DAY_US, "grace_us": GRACE_DAYS * DAY_US,
        "state_through": dt.date(1969, 12, 31), "streak_from": dt.date(1970, 1, 1),
    }
    for name in ["as_of", "w_start", "wp_start"]:
        instant = params[f"{name}_ts"]
        params[f"{name}_us"] = (instant - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(microseconds=1)
    return params


def run_models(params, community):
    """Every model in order, writing the metric tables."""
    for name, sql in models():
        if sql is None:
            edges = con.execute("SELECT source, target, CAST(weight AS DOUBLE) FROM pagerank_edges").fetchall()
            nodes = sorted({e[0] for e in edges} | {e[1] for e in edges})
            index = {m: i for i, m in enumerate(nodes)}
            n = len(nodes)
            ranks = np.zeros(0)
            if n:
                src = np.array([index[e[0]] for e in edges]); dst = np.array([index[e[1]] for e in edges])
                w = np.array([e[2] for e in edges]); outw = np.bincount(src, weights=w, minlength=n)
                ranks = np.full(n, 1.0 / n)
                for _ in range(100):
                    dangling = ranks[outw == 0].sum()
                    nxt = (0.15 / n + 0.85 * dangling / n) + np.bincount(dst, weights=0.85 * ranks[src] * w / outw[src], minlength=n)
                    delta = np.abs(nxt - ranks).sum(); ranks = nxt
                    if delta < 1e-10:
                        break
            con.execute("CREATE OR REPLACE TABLE pagerank(member_id VARCHAR, pagerank DOUBLE)")
            if n:
                con.executemany("INSERT INTO pagerank VALUES (?, ?)", list(zip(nodes, ranks.tolist())))
            continue
        con.execute(f"CREATE OR REPLACE TABLE {name} AS {sql}", sql_params(sql, params))
        if name in METRICS:
            con.execute(f"COPY {name} TO '{out}/{name}-{community}.parquet' (FORMAT parquet, COMPRESSION zstd)")


for community in communities:
    tz = tz_of.get(community, "UTC")
    params = window_params(community, tz, as_of)
    for name in ["content_authors", "member_day_types", "member_edges", "member_months", "membership_events",
                 "payment_events"]:
        sql = (queries / "rollups" / f"{name}.sql").read_text()
        con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT $community AS community_id, * FROM ({sql})",
                    sql_params("$community " + sql, params))
    run_models(params, community)
    print(community, con.execute("SELECT count(*) FROM member_activity").fetchone()[0], "members", flush=True)
