"""`pulse forget` is crash-safe: killed at random moments and run again, it ends in the state
of an erasure that was never interrupted (SPEC §8). Read back with DuckDB."""
import os
import random
import signal
import subprocess
import time

import duckdb
from helpers import TWO_COMMUNITIES

AS_OF = "2026-11-23"
TABLES = ["member_activity", "member_influence", "community_influence", "retention_cohorts",
          "demand_categories", "ranked_members", "kpis"]


def setup(pulse_bin, root, data=None):
    root.mkdir()
    (root / "pulse.toml").write_text('lake = "lake"\nstate_dir = "state"\n' + TWO_COMMUNITIES)
    env = {**os.environ, "PULSE_FORGET_KEY": "crash-test-key-0123456789"}
    env.pop("PULSE_CONFIG", None)
    env.pop("PULSE_LAKE", None)

    def run(*args, check=True):
        proc = subprocess.run([pulse_bin, "--config", str(root / "pulse.toml"), *map(str, args)],
                              cwd=root, env=env, capture_output=True, text=True)
        assert not check or proc.returncode == 0, f"pulse {args}: {proc.stderr}"
        return proc

    if data is None:
        data = root / "events.ndjson"
        run("generate", "--members", "150", "--days", "45", "--communities", "2", "--seed", "3",
            "--end", AS_OF, "--out", data)
    run("import", data)
    run("run", "--as-of", "2026-11-16")
    run("run", "--as-of", AS_OF)
    return run, env, data


def snapshot(root):
    con = duckdb.connect()
    out = {}
    lake = root / "lake"
    out["events"] = con.execute(
        f"SELECT count(*), count(target_member_id), count(DISTINCT member_id) "
        f"FROM read_parquet('{lake}/events/**/*.parquet', hive_partitioning = true)").fetchall()
    for table in TABLES:
        out[table] = sorted(map(repr, con.execute(
            f"SELECT * FROM read_parquet('{lake}/metrics/{table}/**/*.parquet', hive_partitioning = true)"
        ).fetchall()))
    return out


def test_forget_killed_at_random_moments_ends_as_one_uninterrupted(pulse_bin, tmp_path):
    run, env, data = setup(pulse_bin, tmp_path / "reference")
    member = run("query", "--format", "csv",
                 "SELECT member_id FROM ranked_members WHERE rank = 2 AND community_id = 'python-camp'"
                 ).stdout.splitlines()[1]
    run("forget", member)
    want = snapshot(tmp_path / "reference")

    crash_run, crash_env, _ = setup(pulse_bin, tmp_path / "crashed", data)
    rng = random.Random(7)
    root = tmp_path / "crashed"
    for _ in range(4):
        proc = subprocess.Popen([pulse_bin, "--config", str(root / "pulse.toml"), "forget", member],
                                cwd=root, env=crash_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.05, 2.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    crash_run("forget", member)
    assert snapshot(root) == want
    # Nothing names the member: no event, no metric row.
    con = duckdb.connect()
    lake = root / "lake"
    assert con.execute(
        f"SELECT count(*) FROM read_parquet('{lake}/events/**/*.parquet') "
        f"WHERE member_id = ? OR target_member_id = ?", [member, member]).fetchone()[0] == 0
    for table in ["member_activity", "member_influence", "ranked_members"]:
        assert con.execute(f"SELECT count(*) FROM read_parquet('{lake}/metrics/{table}/**/*.parquet') "
                           f"WHERE member_id = ?", [member]).fetchone()[0] == 0, table
