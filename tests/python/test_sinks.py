"""Ranked-list sinks: files read back by independent readers, and a signed Standard Webhooks
POST to a real HTTP receiver on loopback, which verifies every signature."""
import base64
import csv
import hashlib
import hmac
import io
import json
import subprocess
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import pytest

AS_OF = "2026-11-23"
SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
VECTORS = json.loads((Path(__file__).parents[1] / "fixtures" / "signature_test_vectors.json").read_text())


def verify(secret, headers, body):
    """Standard Webhooks verification, written from the spec (not from pulse's code)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(sig.split(",", 1)[1] == expected for sig in headers["webhook-signature"].split())


def test_the_verifier_accepts_the_official_vector_and_rejects_a_tampered_body():
    v = VECTORS["standardwebhooks_official"]
    assert verify(v["secret"], v["headers"], v["body"].encode())
    assert not verify(v["secret"], v["headers"], v["body"].encode() + b" ")


class Receiver:
    """An HTTP receiver that answers from a script (status, headers, delay) and records requests."""

    def __init__(self, script=()):
        self.script = list(script)
        self.requests = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                outer.requests.append({"headers": headers, "body": body, "at": time.monotonic(),
                                       "valid": verify(SECRET, headers, body)})
                status, extra, delay = outer.script.pop(0) if outer.script else (200, {}, 0)
                if delay:
                    time.sleep(delay)
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/pulse"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self):
        return [json.loads(r["body"]) for r in self.requests]


@pytest.fixture
def receiver():
    made = []

    def start(script=()):
        r = Receiver(script)
        made.append(r)
        return r

    yield start
    for r in made:
        r.server.shutdown()


@pytest.fixture
def lake(pulse_bin, tmp_path):
    data = tmp_path / "events.ndjson"
    subprocess.run([pulse_bin, "generate", "--members", "300", "--days", "60", "--communities", "1",
                    "--seed", "9", "--end", AS_OF, "--out", str(data)], check=True, capture_output=True)
    return data


def configure(tmp_path, url=None, max_body="1MiB", timeout=5, attempts=4):
    webhook = f"""
        [[sinks]]
        kind = "webhook"
        url = "{url}"
        secret_env = "PULSE_TEST_SECRET"
        max_body_bytes = "{max_body}"
        timeout_secs = {timeout}
        max_attempts = {attempts}
        retry_initial_ms = 50
        retry_max_secs = 5
    """ if url else ""
    (tmp_path / "pulse.toml").write_text(textwrap.dedent(f"""
        lake = "lake"
        state_dir = "state"

        [[communities]]
        id = "python-camp"
        timezone = "Asia/Shanghai"
        top_n = 150

        [[sinks]]
        kind = "file"
        path = "out/ranked"
        formats = ["csv", "json", "parquet"]
    """) + textwrap.dedent(webhook))


def pulse(pulse_bin, tmp_path, *args):
    env = {"PATH": "/usr/bin:/bin", "PULSE_TEST_SECRET": SECRET}
    return subprocess.run([pulse_bin, "--config", str(tmp_path / "pulse.toml"), *map(str, args)],
                          cwd=tmp_path, capture_output=True, text=True, env=env)


def setup(pulse_bin, tmp_path, lake, **config):
    configure(tmp_path, **config)
    p = pulse(pulse_bin, tmp_path, "import", lake)
    assert p.returncode == 0, p.stderr


def ranked(pulse_bin, tmp_path):
    p = pulse(pulse_bin, tmp_path, "query", "--format", "csv",
              f"SELECT rank, member_id, activity_score, points, tier FROM ranked_members "
              f"WHERE community_id = 'python-camp' AND as_of = DATE '{AS_OF}' ORDER BY rank")
    assert p.returncode == 0, p.stderr
    return list(csv.DictReader(io.StringIO(p.stdout)))


def test_files_equal_the_ranked_members_table(pulse_bin, tmp_path, lake):
    setup(pulse_bin, tmp_path, lake)
    p = pulse(pulse_bin, tmp_path, "run", "--as-of", AS_OF)
    assert p.returncode == 0, p.stderr
    expected = ranked(pulse_bin, tmp_path)
    assert 50 < len(expected) <= 150
    keys = [(int(r["rank"]), r["member_id"], round(float(r["activity_score"]), 9), float(r["points"]), r["tier"])
            for r in expected]
    out = tmp_path / "out" / "ranked" / "python-camp"

    with open(out / f"{AS_OF}.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(int(r["rank"]), r["member_id"], round(float(r["activity_score"]), 9), float(r["points"]), r["tier"])
            for r in rows] == keys
    assert set(rows[0]) >= {"participation", "interaction", "contribution", "retention", "community_id", "as_of"}
    assert {r["community_id"] for r in rows} == {"python-camp"} and {r["as_of"] for r in rows} == {AS_OF}

    con = duckdb.connect()
    for source in (f"read_parquet('{out}/{AS_OF}.parquet')", f"read_json_auto('{out}/{AS_OF}.json')"):
        got = con.execute(f"SELECT rank, member_id, round(activity_score, 9), points, tier FROM {source} ORDER BY rank").fetchall()
        assert [(int(a), b, c, float(d), e) for a, b, c, d, e in got] == keys, source


def test_webhook_delivers_signed_pages_once(pulse_bin, tmp_path, lake, receiver):
    r = receiver()
    setup(pulse_bin, tmp_path, lake, url=r.url, max_body="8KiB")
    p = pulse(pulse_bin, tmp_path, "run", "--as-of", AS_OF, "--dry-run")
    assert p.returncode == 0, p.stderr
    assert "would POST" in p.stdout and not r.requests
    assert not (tmp_path / "out").exists()

    p = pulse(pulse_bin, tmp_path, "run", "--as-of", AS_OF)
    assert p.returncode == 0, p.stderr
    assert all(q["valid"] for q in r.requests)
    assert all(len(q["body"]) <= 8192 for q in r.requests)
    bodies = r.bodies()
    pages = bodies[0]["data"]["pages"]
    assert pages > 1 and len(bodies) == pages
    assert [b["data"]["page"] for b in bodies] == list(range(1, pages + 1))
    assert {b["type"] for b in bodies} == {"ranked_members.published"}
    data = bodies[0]["data"]
    assert data["community_id"] == "python-camp" and data["as_of"] == AS_OF
    assert data["window"] == {"start": "2026-10-24", "end": "2026-11-22"}
    members = [m for b in bodies for m in b["data"]["members"]]
    assert [(m["rank"], m["member_id"]) for m in members] == \
        [(int(x["rank"]), x["member_id"]) for x in ranked(pulse_bin, tmp_path)]
    ids = [q["headers"]["webhook-id"] for q in r.requests]
    assert len(set(ids)) == pages and all(i.startswith("msg_") for i in ids)

    # A re-run of the same as_of delivers nothing; --redeliver delivers the same ids again.
    p = pulse(pulse_bin, tmp_path, "run", "--as-of", AS_OF)
    assert p.returncode == 0, p.stderr
    assert len(r.requests) == pages
    assert "already delivered" in p.stdout
    p = pulse(pulse_bin, tmp_path, "run", "--as-of", AS_OF, "--redeliver")
    assert [q["headers"]["webhook-id"] for q in r.requests[pages:]] == ids

    # Late events change the list: a new id, superseding the one delivered before.
    late = tmp_path / "late.ndjson"
    late.write_text(json.dumps({
        "event_id": "late-1", "source": "generic", "community_id": "python-camp", "member_id": "newcomer",
        "event_type": "post", "occurred_at": "2026-11-22T10:00:00+08:00", "title": "hello"}) + "\n")
    assert pulse(pulse_bin, tmp_path, "import", late).returncode == 0
    before = len(r.requests)
    p = pulse(pulse_bin, tmp_path, "run", "--as-of", AS_OF)
    assert p.returncode == 0, p.stderr
    new = r.requests[before:]
    assert new, "a changed list is delivered again"
    first = json.loads(new[0]["body"])["data"]
    assert new[0]["headers"]["webhook-id"] not in ids
    assert first["supersedes"] in ids
    p = pulse(pulse_bin, tmp_path, "deliveries")
    assert p.returncode == 0 and "delivered" in p.stdout and "webhook:" in p.stdout


def test_503_twice_then_200_is_one_delivery_with_one_id(pulse_bin, tmp_path, lake, receiver):
    r = receiver([(503, {}, 0), (503, {}, 0), (200, {}, 0)])
    setup(pulse_bin, tmp_path, lake, url=r.url)
    p = pulse(pulse_bin, tmp_path, "run", "--as-of", AS_OF)
    assert p.returncode == 0, p.stderr
    assert len(r.requests) == 3
    assert len({q["headers"]["webhook-id"] for q in r.requests}) == 1
    assert all(q["valid"] for q in r.requests)
    records = [json.loads(line) for line in (tmp_path / "state" / "deliveries.jsonl").read_text().splitlines()]
    hooks = [x for x in records if x["sink"].startswith("webhook:")]
    assert len(hooks) == 1 and hooks[0]["status"] == "delivered" and hooks[0]["attempts"] == 3


def test_429_waits_for_retry_after(pulse_bin, tmp_path, lake, receiver):
    r = receiver([(429, {"Retry-After": "2"}, 0)])
    setup(pulse_bin, tmp_path, lake, url=r.url)
    p = pulse(pulse_bin, tmp_path, "run", "--as-of", AS_OF)
    assert p.returncode == 0, p.stderr
    assert len(r.requests) == 2
    assert r.requests[1]["at"] - r.requests[0]["at"] >= 1.9


def test_410_disables_the_sink_until_enabled(pulse_bin, tmp_path, lake, receiver):
    r = receiver([(410, {}, 0)])
    setup(pulse_bin, tmp_path, lake, url=r.url)
    p = pulse(pulse_bin, tmp_path, "run", "--as-of", AS_OF)
    assert p.returncode == 4
    assert "sink disabled" in p.stderr and "410" in p.stderr
    assert len(r.requests) == 1
    p = pulse(pulse_bin, tmp_path, "run", "--as-of", AS_OF)
    assert p.returncode == 4 and "skipped: the sink was disabled" in p.stderr
    assert len(r.requests) == 1
    p = pulse(pulse_bin, tmp_path, "deliveries", "--enable", r.url)
    assert p.returncode == 0 and "enabled" in p.stdout
    p = pulse(pulse_bin, tmp_path, "run", "--as-of", AS_OF)
    assert p.returncode == 0, p.stderr
    assert len(r.requests) == 2


def test_other_4xx_and_3xx_fail_at_once(pulse_bin, tmp_path, lake, receiver):
    r = receiver([(302, {"Location": "http://example.com/"}, 0), (400, {}, 0)])
    setup(pulse_bin, tmp_path, lake, url=r.url)
    p = pulse(pulse_bin, tmp_path, "run", "--as-of", AS_OF)
    assert p.returncode == 4 and "HTTP 302" in p.stderr and "redirects are not followed" in p.stderr
    assert len(r.requests) == 1
    p = pulse(pulse_bin, tmp_path, "run", "--as-of", AS_OF)
    assert p.returncode == 4 and "HTTP 400" in p.stderr
    assert len(r.requests) == 2
    # The failed list is retried by the next run, with the same id, and lands.
    p = pulse(pulse_bin, tmp_path, "run", "--as-of", AS_OF)
    assert p.returncode == 0, p.stderr
    assert len({q["headers"]["webhook-id"] for q in r.requests}) == 1


def test_a_receiver_that_hangs_times_out_into_a_dead_letter(pulse_bin, tmp_path, lake, receiver):
    r = receiver([(200, {}, 3), (200, {}, 3)])
    setup(pulse_bin, tmp_path, lake, url=r.url, timeout=1, attempts=2)
    p = pulse(pulse_bin, tmp_path, "run", "--as-of", AS_OF)
    assert p.returncode == 4
    assert "failed after 2 attempt(s)" in p.stderr and "timed out" in p.stderr
    dead = list((tmp_path / "state" / "dead_letters").glob("msg_*.json"))
    assert len(dead) == 1
    letter = json.loads(dead[0].read_text())
    assert letter["payload"]["data"]["community_id"] == "python-camp"
    assert letter["attempts"] == 2
