"""`backend = "ballista"` against a real Ballista cluster: `pulse ballista-scheduler` and
`pulse ballista-executor` as separate processes on loopback; `pulse run` sends the models to
them and must write exactly the tables the local engine writes. Needs a `--features ballista`
build (scripts/test builds one)."""
import csv
import io
import os
import shutil
import socket
import subprocess
import time

import pytest
from helpers import TWO_COMMUNITIES, free_port

AS_OF = "2026-11-23"
TABLES = ["member_activity", "member_influence", "community_influence", "retention_cohorts",
          "demand_categories", "ranked_members", "kpis"]


def wait_for_port(port, proc, what, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, f"{what} exited: {proc.stderr.read()}"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"{what} did not listen on {port}")


def test_models_on_a_ballista_cluster_match_the_local_engine(pulse_bin, tmp_path):
    if "ballista-scheduler" not in subprocess.run([pulse_bin, "--help"], capture_output=True, text=True).stdout:
        pytest.skip("pulse was built without --features ballista")
    lake = tmp_path / "lake"
    scheduler_port, flight_port, grpc_port = free_port(), free_port(), free_port()
    local_cfg = tmp_path / "local.toml"
    local_cfg.write_text(TWO_COMMUNITIES)
    cluster_cfg = tmp_path / "cluster.toml"
    cluster_cfg.write_text(f'[engine]\nbackend = "ballista"\nballista_url = "df://127.0.0.1:{scheduler_port}"\n'
                           + TWO_COMMUNITIES)
    env = {k: v for k, v in os.environ.items() if k not in ("PULSE_CONFIG", "PULSE_LAKE")}

    def pulse(config, *args):
        proc = subprocess.run([pulse_bin, "--config", str(config), "--lake", str(lake), *map(str, args)],
                              cwd=tmp_path, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, f"pulse {args} exited {proc.returncode}: {proc.stderr}"
        return proc.stdout

    def tables():
        out = {}
        for table in TABLES:
            rows = csv.reader(io.StringIO(pulse(local_cfg, "query", "--format", "csv", f"SELECT * FROM {table}")))
            header = next(rows)
            out[table] = (header, sorted(map(tuple, rows)))
        return out

    data = tmp_path / "events.ndjson"
    pulse(local_cfg, "generate", "--members", "300", "--days", "60", "--communities", "2", "--seed", "3",
          "--end", AS_OF, "--out", data)
    pulse(local_cfg, "import", data)
    pulse(local_cfg, "run", "--as-of", AS_OF)
    local = tables()

    cluster = [
        subprocess.Popen([pulse_bin, "--config", str(local_cfg), "--lake", str(lake), "ballista-scheduler",
                          "--bind", f"127.0.0.1:{scheduler_port}"],
                         cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True),
    ]
    try:
        wait_for_port(scheduler_port, cluster[0], "scheduler")
        cluster.append(subprocess.Popen(
            [pulse_bin, "--config", str(local_cfg), "--lake", str(lake), "ballista-executor",
             "--scheduler", f"df://127.0.0.1:{scheduler_port}", "--bind", f"127.0.0.1:{flight_port}",
             "--grpc-port", str(grpc_port)],
            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
        wait_for_port(flight_port, cluster[1], "executor")
        # Recompute everything (rollups too) on the cluster.
        shutil.rmtree(lake / "metrics")
        shutil.rmtree(lake / "rollups")
        pulse(cluster_cfg, "run", "--as-of", AS_OF)
    finally:
        for proc in cluster:
            proc.terminate()
            proc.wait(timeout=30)
    remote = tables()
    for table in TABLES:
        assert remote[table][1], f"{table} is empty"
        assert remote[table] == local[table], table
    assert not list(lake.glob("_scratch/*/*")), "the cluster's scratch tables were removed"
    # With the cluster gone the same command fails (so the run above did use it).
    gone = subprocess.run([pulse_bin, "--config", str(cluster_cfg), "--lake", str(lake), "run", "--as-of", AS_OF],
                          cwd=tmp_path, env=env, capture_output=True, text=True)
    assert gone.returncode != 0
