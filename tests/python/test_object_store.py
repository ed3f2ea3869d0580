"""An S3 lake against a real S3-compatible server on loopback (moto's server mode): import, run,
query and report give the same results as a local lake, re-imports add nothing, re-runs replace
partitions, and an independent reader (Polars, its own S3 client) reads what pulse wrote."""
import csv
import io
import os
import subprocess

import boto3
import polars as pl
import pytest
from helpers import TWO_COMMUNITIES, free_port
from moto.server import ThreadedMotoServer

AS_OF = "2026-11-23"
METRICS = ["member_activity", "member_influence", "community_influence", "retention_cohorts",
           "demand_categories", "ranked_members", "kpis"]


@pytest.fixture(scope="module")
def s3():
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT": f"http://127.0.0.1:{port}",
        "AWS_ALLOW_HTTP": "true",
    }
    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT"], region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket="pulse-lake")
    yield env, client
    server.stop()


def run(pulse_bin, cwd, lake, env, *args):
    proc = subprocess.run(
        [pulse_bin, "--config", str(cwd / "pulse.toml"), "--lake", lake, *map(str, args)],
        cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True,
    )
    assert proc.returncode == 0, f"pulse {args} on {lake} exited {proc.returncode}: {proc.stderr}"
    return proc


def rows(proc):
    return list(csv.DictReader(io.StringIO(proc.stdout)))


def keys(client, prefix):
    out = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket="pulse-lake", Prefix=prefix):
        out += [o["Key"] for o in page.get("Contents", [])]
    return out


def test_s3_lake_matches_a_local_lake(pulse_bin, tmp_path, s3):
    env, client = s3
    (tmp_path / "pulse.toml").write_text(TWO_COMMUNITIES)
    data = tmp_path / "events.ndjson"
    run(pulse_bin, tmp_path, str(tmp_path / "local"), env, "generate", "--members", "300", "--days",
        "60", "--communities", "2", "--seed", "5", "--end", AS_OF, "--out", data)
    lakes = {"local": str(tmp_path / "local"), "s3": "s3://pulse-lake/prod/pulse"}

    imported = {}
    for name, lake in lakes.items():
        imported[name] = run(pulse_bin, tmp_path, lake, env, "import", data).stdout
        run(pulse_bin, tmp_path, lake, env, "run", "--as-of", AS_OF)
    counts = {name: out.split(" files")[0] for name, out in imported.items()}
    assert counts["local"] == counts["s3"] and "imported 0 " not in counts["s3"], counts

    # Every event file, metric partition and report is an object under the prefix.
    event_keys = keys(client, "prod/pulse/events/")
    assert event_keys and all(k.endswith(".parquet") for k in event_keys)
    assert len(event_keys) == len(list((tmp_path / "local" / "events").rglob("*.parquet")))
    for table in METRICS:
        assert keys(client, f"prod/pulse/metrics/{table}/community_id=python-camp/as_of={AS_OF}/") == [
            f"prod/pulse/metrics/{table}/community_id=python-camp/as_of={AS_OF}/part-0.parquet"]
    report = keys(client, f"prod/pulse/reports/data-circle/{AS_OF}/")
    assert f"prod/pulse/reports/data-circle/{AS_OF}/report.html" in report
    assert not keys(client, "prod/pulse/_scratch/"), "no scratch left behind"

    # The same numbers from both lakes.
    for table in ["events"] + METRICS:
        # received_at is the moment of each import, the one column allowed to differ.
        sql = f"SELECT * EXCLUDE (received_at) FROM {table}" if table == "events" else f"SELECT * FROM {table}"
        local, remote = (sorted(tuple(r.values()) for r in rows(run(pulse_bin, tmp_path, lake, env, "query",
                                                                       "--format", "csv", sql)))
                         for lake in lakes.values())
        assert local == remote, table
        assert local, f"{table} is empty"

    # Importing the same file again adds nothing; running again replaces partitions in place.
    again = run(pulse_bin, tmp_path, lakes["s3"], env, "import", data).stdout
    assert "imported 0 " in again, again
    assert len(keys(client, "prod/pulse/events/")) == len(event_keys)
    run(pulse_bin, tmp_path, lakes["s3"], env, "run", "--as-of", AS_OF)
    assert len(keys(client, "prod/pulse/metrics/kpis/")) == 2

    # An independent reader with its own S3 client (Polars) sees what pulse wrote.
    options = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing",
               "aws_region": "us-east-1", "aws_endpoint_url": env["AWS_ENDPOINT"], "aws_allow_http": "true"}
    ranked = (pl.scan_parquet("s3://pulse-lake/prod/pulse/metrics/ranked_members/**/*.parquet",
                              hive_partitioning=True, storage_options=options)
              .filter((pl.col("community_id") == "python-camp") & (pl.col("as_of") == pl.date(2026, 11, 23)))
              .sort("rank").collect())
    ours = rows(run(pulse_bin, tmp_path, lakes["s3"], env, "query", "--format", "csv",
                    "SELECT member_id FROM ranked_members WHERE community_id = 'python-camp' ORDER BY rank"))
    assert ranked["member_id"].to_list() == [r["member_id"] for r in ours]


def test_s3_lake_errors_name_the_lake(pulse_bin, tmp_path, s3):
    env, _ = s3
    (tmp_path / "pulse.toml").write_text(TWO_COMMUNITIES)
    proc = subprocess.run(
        [pulse_bin, "--config", str(tmp_path / "pulse.toml"), "--lake", "s3://no-such-bucket/x",
         "query", "SELECT count(*) FROM events"],
        cwd=tmp_path, env={**os.environ, **env}, capture_output=True, text=True,
    )
    assert proc.returncode != 0
    assert "s3://no-such-bucket/x" in proc.stderr or "no-such-bucket" in proc.stderr, proc.stderr


def test_forget_on_an_s3_lake_leaves_no_object_naming_the_member(pulse_bin, tmp_path, s3):
    """`pulse forget` on an S3 lake: no object under the prefix names the member any more (Parquet
    read back by Polars with its own S3 client), and a re-import drops their events."""
    env, client = s3
    env = {**env, "PULSE_FORGET_KEY": "test-key-0123456789abcdef"}
    (tmp_path / "pulse.toml").write_text(TWO_COMMUNITIES)
    data = tmp_path / "events.ndjson"
    lake = "s3://pulse-lake/forget/pulse"
    run(pulse_bin, tmp_path, lake, env, "generate", "--members", "120", "--days", "40",
        "--communities", "2", "--seed", "9", "--end", AS_OF, "--out", data)
    run(pulse_bin, tmp_path, lake, env, "import", data)
    run(pulse_bin, tmp_path, lake, env, "run", "--as-of", AS_OF)
    top = rows(run(pulse_bin, tmp_path, lake, env, "query", "--format", "csv",
                   "SELECT member_id FROM ranked_members WHERE rank = 1 AND community_id = 'python-camp'"))
    member = top[0]["member_id"]

    def objects_naming(member):
        found = []
        for key in keys(client, "forget/pulse/"):
            body = client.get_object(Bucket="pulse-lake", Key=key)["Body"].read()
            if key.endswith(".parquet"):
                frame = pl.read_parquet(io.BytesIO(body))
                text = " ".join(str(v) for col in frame.columns for v in frame[col].to_list())
            else:
                text = body.decode("utf-8", "replace")
            if member in text.split() or f'"{member}"' in text or f">{member}<" in text:
                found.append(key)
        return found

    assert objects_naming(member)
    out = run(pulse_bin, tmp_path, lake, env, "forget", member).stdout
    assert "event(s) removed" in out, out
    assert objects_naming(member) == []
    again = run(pulse_bin, tmp_path, lake, env, "forget", member).stdout
    assert "0 partition(s) rewritten" in again, again
    reimport = run(pulse_bin, tmp_path, lake, env, "import", data).stdout
    assert "forgotten" in reimport and "imported 0 " in reimport, reimport
    assert objects_naming(member) == []


def test_compaction_on_an_s3_lake(pulse_bin, tmp_path, s3):
    """Small imports, then `pulse compact` on an S3 lake: one event object per partition, the same
    rows and metrics, re-imports add nothing, a reader querying meanwhile always sees every event,
    and Polars (its own S3 client, globbing *.parquet) reads the compacted lake."""
    import threading

    env, client = s3
    (tmp_path / "pulse.toml").write_text(TWO_COMMUNITIES + "\n[compaction]\nmax_files = 0\n")
    data = tmp_path / "events.ndjson"
    lake = "s3://pulse-lake/compact/pulse"
    run(pulse_bin, tmp_path, lake, env, "generate", "--members", "120", "--days", "30",
        "--communities", "2", "--seed", "11", "--end", AS_OF, "--out", data)
    lines = data.read_text().splitlines(keepends=True)
    chunks = []
    for i in range(4):
        chunk = tmp_path / f"chunk{i}.ndjson"
        chunk.write_text("".join(lines[i::4]))
        run(pulse_bin, tmp_path, lake, env, "import", chunk)
        chunks.append(chunk)

    def partitions():
        out = {}
        for key in keys(client, "compact/pulse/events/"):
            if key.endswith(".parquet"):
                out.setdefault(key.rsplit("/", 1)[0], []).append(key)
        return out

    def table(name):
        return sorted(tuple(r.values()) for r in rows(run(pulse_bin, tmp_path, lake, env, "query",
                                                          "--format", "csv", f"SELECT * FROM {name}")))

    before = partitions()
    assert max(len(v) for v in before.values()) == 4
    run(pulse_bin, tmp_path, lake, env, "run", "--as-of", AS_OF)
    events, metrics = table("events"), {t: table(t) for t in METRICS}
    count = str(len(events))

    seen, stop = [], threading.Event()

    def reader():
        while not stop.is_set():
            proc = subprocess.run(
                [pulse_bin, "--config", str(tmp_path / "pulse.toml"), "--lake", lake, "query",
                 "--format", "csv", "SELECT count(*) AS n FROM events"],
                cwd=tmp_path, env={**os.environ, **env}, capture_output=True, text=True)
            seen.append(proc.stdout.splitlines()[-1] if proc.returncode == 0 else proc.stderr)

    thread = threading.Thread(target=reader)
    thread.start()
    out = run(pulse_bin, tmp_path, lake, env, "compact").stdout
    stop.set()
    thread.join()
    assert out.startswith(f"compacted {len(before)} partition(s)"), out
    assert seen and all(s == count for s in seen), (count, [s for s in seen if s != count])

    after = partitions()
    assert after.keys() == before.keys() and all(len(v) == 1 for v in after.values()), after
    markers = [k for k in keys(client, "compact/pulse/events/") if "/_replaced=" in k]
    assert markers, "replaced files stay marked for the markers' grace period"
    assert table("events") == events
    run(pulse_bin, tmp_path, lake, env, "run", "--as-of", AS_OF)
    for name, expected in metrics.items():
        assert table(name) == expected, name
    for chunk in chunks:
        assert "imported 0 " in run(pulse_bin, tmp_path, lake, env, "import", chunk).stdout
    assert partitions() == after

    options = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing",
               "aws_region": "us-east-1", "aws_endpoint_url": env["AWS_ENDPOINT"], "aws_allow_http": "true"}
    n = (pl.scan_parquet("s3://pulse-lake/compact/pulse/events/**/*.parquet", hive_partitioning=True,
                         storage_options=options).select(pl.len()).collect().item())
    assert n == len(events)
