"""`pulse serve` over real HTTP on loopback: signatures (official vectors and our own), every
answer code, the spool into the lake, and a crash test (SIGKILL under load, restart: every
acknowledged event is in the lake exactly once)."""
import base64
import concurrent.futures
import datetime
import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import textwrap
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from helpers import free_port

FIXTURES = Path(__file__).parents[1] / "fixtures"
VECTORS = json.loads((FIXTURES / "signature_test_vectors.json").read_text())
WHSEC = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
DISCOURSE_SECRET = "my_lovely_secret_for_web_hook"
STRIPE_SECRET = "whsec_test_secret_stripe"
TOKEN = "t0ken-for-tests"


class Server:
    def __init__(self, pulse_bin, tmp_path, communities='[[communities]]\nid = "c1"', spool_max="1GiB",
                 report_cron="0 0 9 1 1 *", ingest_cron="0 0 0 1 1 *", extra="", max_body="64KiB", ingest=""):
        self.pulse_bin, self.dir, self.port = pulse_bin, tmp_path, free_port()
        ingest = "\n            ".join(line.strip() for line in ingest.strip().splitlines())
        (tmp_path / "pulse.toml").write_text(textwrap.dedent(f"""
            lake = "lake"
            state_dir = "state"
""") + communities + textwrap.dedent(f"""

            [report]
            schedule = "{report_cron}"

            [ingest]
            listen = "127.0.0.1:{self.port}"
            schedule = "{ingest_cron}"
            token_env = "PULSE_TEST_TOKEN"
            max_body_bytes = "{max_body}"
            spool_max_bytes = "{spool_max}"
            {ingest}

            [ingest.identity]
            "stripe:cus_QsYn1aSStYv4tf" = "forum:1"

            [[ingest.sources]]
            name = "forum"
            kind = "discourse"
            community = "c1"
            secret_env = "PULSE_TEST_DISCOURSE"

            [[ingest.sources]]
            name = "pay"
            kind = "stripe"
            community = "c1"
            secret_env = "PULSE_TEST_STRIPE"

            [[ingest.sources]]
            name = "app"
            kind = "standard_webhooks"
            community = "c1"
            secret_env = "PULSE_TEST_WHSEC"
        """) + textwrap.dedent(extra))
        self.env = {"PATH": "/usr/bin:/bin", "PULSE_TEST_TOKEN": TOKEN, "PULSE_TEST_DISCOURSE": DISCOURSE_SECRET,
                    "PULSE_TEST_STRIPE": STRIPE_SECRET, "PULSE_TEST_WHSEC": WHSEC}
        self.proc = None
        self.preexec_fn, self.stderr = None, subprocess.PIPE

    def start(self):
        self.proc = subprocess.Popen([self.pulse_bin, "--config", "pulse.toml", "serve"], cwd=self.dir,
                                     env=self.env, stdout=subprocess.DEVNULL, stderr=self.stderr,
                                     preexec_fn=self.preexec_fn)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if self.get("/healthz")[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)
        failed = self.proc.poll() is not None and self.proc.stderr
        raise AssertionError(f"serve did not start: {self.proc.stderr.read().decode() if failed else ''}")

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)

    def get(self, path):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
            return r.status, r.read().decode()

    def post(self, path, body, headers=None):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=body, method="POST",
                                     headers={"content-type": "application/json", **(headers or {})})
        def parse(raw):
            try:
                return json.loads(raw or b"{}")
            except ValueError:
                return {"text": raw.decode(errors="replace")}
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, parse(r.read()), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, parse(e.read()), dict(e.headers)

    def pulse(self, *args):
        return subprocess.run([self.pulse_bin, "--config", "pulse.toml", *args], cwd=self.dir, env=self.env,
                              capture_output=True, text=True)


@pytest.fixture
def server(pulse_bin, tmp_path):
    s = Server(pulse_bin, tmp_path)
    s.start()
    yield s
    if s.proc.poll() is None:
        s.stop(signal.SIGKILL)


def sw_headers(body, secret=WHSEC, msg_id="msg_1", ts=None):
    ts = ts or int(time.time())
    key = base64.b64decode(secret.removeprefix("whsec_"))
    sig = base64.b64encode(hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": f"v1,{sig}"}


def event(i, **extra):
    return {"event_id": f"e{i}", "source": "app", "community_id": "c1", "member_id": f"m{i % 7}",
            "event_type": "post", "occurred_at": "2026-11-20T10:00:00+08:00", **extra}


def test_answers_and_signatures(server):
    # Discourse: the official ping vector; a real post payload signed with our secret; tampered.
    ping = VECTORS["discourse_official_ping"]
    status, body, _ = server.post("/v1/webhooks/forum", ping["body"].encode(), ping["headers"])
    assert (status, body) == (200, {"ignored": "ping"})
    post = (FIXTURES / "discourse_post_created.json").read_bytes()
    sig = "sha256=" + hmac.new(DISCOURSE_SECRET.encode(), post, hashlib.sha256).hexdigest()
    headers = {"X-Discourse-Event": "post_created", "X-Discourse-Event-Signature": sig}
    assert server.post("/v1/webhooks/forum", post, headers)[:2] == (200, {"accepted": 1})
    assert server.post("/v1/webhooks/forum", post + b" ", headers)[0] == 401
    assert server.post("/v1/webhooks/forum", post, {"X-Discourse-Event": "post_created"})[0] == 401

    # Stripe: fresh signature; two v1 (rotation, one valid); a stale timestamp.
    invoice = (FIXTURES / "stripe_invoice_paid.json").read_bytes()
    def stripe_sig(t, body=invoice):
        return hmac.new(STRIPE_SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    now = int(time.time())
    assert server.post("/v1/webhooks/pay", invoice, {"Stripe-Signature": f"t={now},v1={stripe_sig(now)}"})[:2] == (200, {"accepted": 1})
    rotated = f"t={now},v1={'0' * 64},v1={stripe_sig(now)}"
    assert server.post("/v1/webhooks/pay", invoice, {"Stripe-Signature": rotated})[0] == 200
    stale = now - 301
    assert server.post("/v1/webhooks/pay", invoice, {"Stripe-Signature": f"t={stale},v1={stripe_sig(stale)}"})[0] == 401

    # Standard Webhooks source: canonical events, signed; a bad signature; wrong community.
    batch = json.dumps([event(1), event(2)]).encode()
    assert server.post("/v1/webhooks/app", batch, sw_headers(batch))[:2] == (200, {"accepted": 2})
    assert server.post("/v1/webhooks/app", batch, sw_headers(batch, secret="whsec_" + base64.b64encode(b"other").decode()))[0] == 401
    other = json.dumps([event(3, community_id="c2")]).encode()
    assert server.post("/v1/webhooks/app", other, sw_headers(other))[0] == 422
    assert server.post("/v1/webhooks/nope", batch, sw_headers(batch))[0] == 404

    # /v1/events: bearer token; NDJSON; malformed; invalid with reasons; too large.
    auth = {"authorization": f"Bearer {TOKEN}"}
    ndjson = "\n".join(json.dumps(event(i, source="generic")) for i in range(10, 13)).encode()
    assert server.post("/v1/events", ndjson, auth)[:2] == (200, {"accepted": 3})
    assert server.post("/v1/events", ndjson)[0] == 401
    assert server.post("/v1/events", ndjson, {"authorization": "Bearer wrong"})[0] == 401
    assert server.post("/v1/events", b"{not json", auth)[0] == 400
    status, body, _ = server.post("/v1/events", json.dumps([event(20, source="generic"), event(21, source="generic", event_type="dance")]).encode(), auth)
    assert status == 422 and body["rejected"] == [{"index": 1, "reason": "unknown event_type `dance`"}]
    big = json.dumps([event(i, body="x" * 1000) for i in range(100)]).encode()
    assert server.post("/v1/events", big, auth)[0] == 413

    status, text = server.get("/metrics")
    assert 'pulse_ingest_events_total{source="events",outcome="accepted"} 3' in text
    assert 'pulse_ingest_events_total{source="forum",outcome="unauthorized"} 2' in text
    assert "pulse_spool_bytes" in text and "pulse_spool_fsync_seconds_count" in text

    # SIGTERM: exits 0; the next run moves the spool into the lake, without personal data.
    assert server.stop() == 0
    p = server.pulse("run", "--as-of", "2026-11-23")
    assert p.returncode == 0, p.stderr
    rows = server.pulse("query", "--format", "json",
                        "SELECT source, event_id, member_id, event_type, amount_minor, currency FROM events ORDER BY source, event_id")
    events = json.loads(rows.stdout)
    by_source = {}
    for e in events:
        by_source.setdefault(e["source"], []).append(e)
    assert len(by_source["forum"]) == 1 and by_source["forum"][0]["event_type"] == "post"
    # Two Stripe deliveries of one event (the rotation test re-sent it): stored once, and the
    # customer is mapped to the forum member.
    assert [(e["member_id"], e["amount_minor"], e["currency"]) for e in by_source["pay"]] == [("forum:1", 10800, "USD")]
    assert len(by_source["app"]) == 2 and len(by_source["generic"]) == 3
    everything = server.pulse("query", "--format", "csv", "SELECT * FROM events").stdout
    assert "alexanmtz" not in everything and "user1" not in everything
    assert not list((server.dir / "state" / "spool").glob("segment-*.log")) or \
        all(p.stat().st_size == 0 for p in (server.dir / "state" / "spool").glob("segment-*.log"))


def test_acknowledged_events_survive_sigkill(pulse_bin, tmp_path):
    server = Server(pulse_bin, tmp_path)
    acked, stop = set(), False
    counter = iter(range(10**9))

    def load():
        while not stop:
            i = next(counter)
            body = json.dumps(event(i, source="generic")).encode()
            try:
                status, _, _ = server.post("/v1/events", body, {"authorization": f"Bearer {TOKEN}"})
                if status == 200:
                    acked.add(f"e{i}")
            except OSError:
                time.sleep(0.05)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        server.start()
        workers = [pool.submit(load) for _ in range(8)]
        for _ in range(4):
            time.sleep(1.5)
            server.stop(signal.SIGKILL)
            server.start()
        time.sleep(1)
        stop = True
        for w in workers:
            w.result()
    assert server.stop() == 0
    assert len(acked) > 200, len(acked)
    p = server.pulse("run", "--as-of", "2026-11-23")
    assert p.returncode == 0, p.stderr
    rows = json.loads(server.pulse("query", "--format", "json",
                                   "SELECT event_id, count(*) AS n FROM events GROUP BY event_id").stdout)
    stored = {r["event_id"]: r["n"] for r in rows}
    missing = acked - set(stored)
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:5]}"
    assert all(n == 1 for n in stored.values())
    print(f"crash test: {len(acked)} acknowledged events over 4 SIGKILLs and restarts, "
          f"{len(stored)} distinct events in the lake, 0 lost, 0 twice")


def test_acknowledged_events_survive_a_file_size_limit(pulse_bin, tmp_path):
    """A real file-size limit (`ulimit -f`, SIGXFSZ ignored so writes fail with EFBIG) cuts spool
    writes part-way through a frame. Failed requests get 503; every request answered 200 —
    before, between and after the failures, once the limit is lifted — reaches the lake."""
    import resource
    server = Server(pulse_bin, tmp_path)

    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (48 << 10, resource.RLIM_INFINITY))

    server.preexec_fn, server.stderr = limited, subprocess.DEVNULL
    auth = {"authorization": f"Bearer {TOKEN}"}
    counter, lock = iter(range(10**9)), threading.Lock()
    acked, refused, retry_after = set(), set(), set()

    def send(n):
        with lock:
            ids = [next(counter) for _ in range(n)]
        body = json.dumps([event(i, source="generic", body="x" * 150) for i in ids]).encode()
        status, _, headers = server.post("/v1/events", body, auth)
        with lock:
            (acked if status == 200 else refused).update(f"e{i}" for i in ids)
            if status == 503:
                retry_after.add(headers.get("retry-after"))
        return status

    server.start()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        # ~200 KB of events against a 48 KiB limit; concurrent requests share (failing) writes.
        limited_phase = list(pool.map(send, [1 + i % 9 for i in range(150)]))
        assert set(limited_phase) == {200, 503}, limited_phase
        assert retry_after == {"10"}, retry_after
        # Space returns: new batches are acknowledged (and, below, kept).
        resource.prlimit(server.proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)
        after = list(pool.map(send, [1 + i % 9 for i in range(40)]))
        assert set(after) == {200}, after
    assert server.stop() == 0
    p = server.pulse("run", "--as-of", "2026-11-23")
    assert p.returncode == 0, p.stderr
    stored = {r["event_id"] for r in json.loads(server.pulse("query", "--format", "json",
                                                            "SELECT event_id FROM events").stdout)}
    missing = acked - stored
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged events lost, e.g. {sorted(missing)[:5]}"
    assert not stored & refused, "events of refused requests were rolled back"
    print(f"file-size limit: {limited_phase.count(200)} requests answered 200 and {limited_phase.count(503)} "
          f"answered 503 under the limit, {len(after)} answered 200 after it; {len(acked)} events acknowledged, "
          f"{len(stored)} in the lake")


C2_TOKEN = "t0ken-for-c2-only"
TWO_SENDERS = """
    [[ingest.sources]]
    name = "gen"
    kind = "generic"
    community = "c1"
    secret_env = "PULSE_TEST_WHSEC"
"""


def lake_events(server, columns="community_id, source, event_id, member_id"):
    """Stop the server, move the spool into the lake, return the stored events."""
    if server.proc.poll() is None:
        assert server.stop() == 0
    p = server.pulse("run", "--as-of", "2026-11-23")
    assert p.returncode == 0, p.stderr
    rows = server.pulse("query", "--format", "json", f"SELECT {columns} FROM events ORDER BY 1, 2, 3")
    assert rows.returncode == 0, rows.stderr
    return json.loads(rows.stdout)


def test_the_same_source_and_event_id_in_two_communities_are_both_kept(server):
    auth = {"authorization": f"Bearer {TOKEN}"}
    for community, member in [("c1", "m1"), ("c2", "x1")]:
        body = json.dumps(event(1, source="generic", community_id=community, member_id=member)).encode()
        assert server.post("/v1/events", body, auth)[:2] == (200, {"accepted": 1})
    assert [(e["community_id"], e["event_id"], e["member_id"]) for e in lake_events(server)] == \
        [("c1", "e1", "m1"), ("c2", "e1", "x1")]


def test_v1_events_may_not_use_a_webhook_endpoints_name_as_source(server):
    # A token holder sends the id the forum will give its next post, ahead of the signed delivery.
    auth = {"authorization": f"Bearer {TOKEN}"}
    forged = event(0, source="forum", event_id="post-12", member_id="attacker")
    status, body, _ = server.post("/v1/events", json.dumps([event(1, source="generic"), forged]).encode(), auth)
    assert status == 422, (status, body)
    assert body["rejected"] == [{"index": 1, "reason": "source `forum` is the name of a webhook endpoint "
                                 "([[ingest.sources]]); only that endpoint sends it"}]
    post = (FIXTURES / "discourse_post_created.json").read_bytes()
    sig = "sha256=" + hmac.new(DISCOURSE_SECRET.encode(), post, hashlib.sha256).hexdigest()
    headers = {"X-Discourse-Event": "post_created", "X-Discourse-Event-Signature": sig}
    assert server.post("/v1/webhooks/forum", post, headers)[:2] == (200, {"accepted": 1})
    assert [(e["source"], e["event_id"], e["member_id"]) for e in lake_events(server)] == \
        [("forum", "post-12", "forum:1")]


def test_received_at_is_set_by_the_server_and_source_by_the_endpoint(pulse_bin, tmp_path):
    server = Server(pulse_bin, tmp_path, extra=TWO_SENDERS)
    server.start()
    started = time.time()
    claimed = {"received_at": "2001-01-01T00:00:00Z"}
    auth = {"authorization": f"Bearer {TOKEN}"}
    body = json.dumps(event(1, source="generic", **claimed)).encode()
    assert server.post("/v1/events", body, auth)[0] == 200
    # Signed by the endpoint's own secret, but claiming another endpoint's source.
    body = json.dumps(event(2, source="forum", **claimed)).encode()
    assert server.post("/v1/webhooks/app", body, sw_headers(body))[:2] == (200, {"accepted": 1})
    body = json.dumps(event(3, source="pay", **claimed)).encode()
    assert server.post("/v1/webhooks/gen", body, sw_headers(body))[:2] == (200, {"accepted": 1})
    rows = lake_events(server, "event_id, source, CAST(received_at AS VARCHAR) AS received_at")
    assert [(e["event_id"], e["source"]) for e in rows] == [("e1", "generic"), ("e2", "app"), ("e3", "gen")]
    for e in rows:
        received = datetime.datetime.fromisoformat(e["received_at"].replace("Z", "+00:00")).timestamp()
        assert started - 1 <= received <= time.time(), e


def test_a_token_limited_to_some_communities(pulse_bin, tmp_path):
    server = Server(pulse_bin, tmp_path, communities='[[communities]]\nid = "c1"\n[[communities]]\nid = "c2"',
                    extra=TWO_SENDERS + """
    [[ingest.tokens]]
    token_env = "PULSE_TEST_TOKEN_C2"
    communities = ["c2"]
""")
    server.env["PULSE_TEST_TOKEN_C2"] = C2_TOKEN
    server.start()
    c2_only = {"authorization": f"Bearer {C2_TOKEN}"}
    assert server.post("/v1/events", json.dumps(event(1, community_id="c2", source="generic")).encode(),
                       c2_only)[:2] == (200, {"accepted": 1})
    # Another community, alone or in a batch: the whole request is refused.
    status, body, _ = server.post("/v1/events", json.dumps(event(2, source="generic")).encode(), c2_only)
    assert status == 403 and "c1" in body["error"], (status, body)
    mixed = [event(3, community_id="c2", source="generic"), event(4, source="generic")]
    assert server.post("/v1/events", json.dumps(mixed).encode(), c2_only)[0] == 403
    assert server.post("/v1/events", json.dumps(event(5, source="generic")).encode(),
                       {"authorization": "Bearer wrong"})[0] == 401
    # The unrestricted token (ingest.token_env) still sends for every community.
    assert server.post("/v1/events", json.dumps(event(6, source="generic")).encode(),
                       {"authorization": f"Bearer {TOKEN}"})[0] == 200
    assert [(e["community_id"], e["event_id"]) for e in lake_events(server)] == [("c1", "e6"), ("c2", "e1")]


def test_export_folders_are_picked_up_once(pulse_bin, tmp_path):
    import zipfile
    drop_slack, drop_discord = tmp_path / "drop" / "slack", tmp_path / "drop" / "discord"
    drop_slack.mkdir(parents=True)
    drop_discord.mkdir(parents=True)
    (tmp_path / "pulse.toml").write_text(textwrap.dedent("""
        lake = "lake"
        state_dir = "state"

        [[communities]]
        id = "c1"

        [[ingest.exports]]
        path = "drop/slack"
        format = "slack_export"
        community = "c1"

        [[ingest.exports]]
        path = "drop/discord"
        format = "discord_export"
        community = "c1"
    """))
    with zipfile.ZipFile(drop_slack / "workspace.zip", "w") as z:
        z.write(FIXTURES / "slack_export_channels.json", "channels.json")
        z.write(FIXTURES / "slack_export_users.json", "users.json")
        z.write(FIXTURES / "slack_export_message.json", "general/2025-01-11.json")
    (drop_discord / "general.json").write_bytes((FIXTURES / "discordchatexporter.json").read_bytes())
    (drop_discord / "partial.json.part").write_text("{")

    def pulse(*args):
        return subprocess.run([pulse_bin, "--config", "pulse.toml", *args], cwd=tmp_path,
                              capture_output=True, text=True)

    p = pulse("run", "--as-of", "2026-11-23")
    assert p.returncode == 0, p.stderr
    rows = json.loads(pulse("query", "--format", "json",
                            "SELECT source, event_type, count(*) AS n FROM events GROUP BY 1, 2 ORDER BY 1, 2").stdout)
    got = {(r["source"], r["event_type"]): r["n"] for r in rows}
    # Slack: a join, a thread starter (post) with two replies (comments), three reactions by
    # others (likes); the tombstone is skipped. Discord: a join, a post, two reactions, a reply.
    assert got == {("slack_export", "join"): 1, ("slack_export", "post"): 1, ("slack_export", "comment"): 2,
                   ("slack_export", "like"): 3, ("discord_export", "join"): 1, ("discord_export", "post"): 1,
                   ("discord_export", "like"): 2, ("discord_export", "comment"): 1}, got
    everything = pulse("query", "--format", "csv", "SELECT * FROM events").stdout
    assert "Ada" not in everything and "Lovelace" not in everything and "dudewhatzup" not in everything
    picked = (tmp_path / "state" / "exports.jsonl").read_text().splitlines()
    assert len(picked) == 2
    # The next run picks up nothing again; a new file is picked up.
    p = pulse("run", "--as-of", "2026-11-23")
    assert p.returncode == 0 and len((tmp_path / "state" / "exports.jsonl").read_text().splitlines()) == 2
    # `pulse import --format slack_export` works directly too (all duplicates here).
    p = pulse("import", "--format", "slack_export", "--community", "c1", str(drop_slack / "workspace.zip"))
    assert p.returncode == 0 and "imported 0 · duplicate 7" in p.stdout, p.stdout + p.stderr
    p = pulse("import", "--format", "slack_export", str(drop_slack / "workspace.zip"))
    assert p.returncode != 0 and "--community" in p.stderr


def test_a_fresh_install_gets_its_first_events_from_the_spool(pulse_bin, tmp_path):
    # No community configured and an empty lake: the run's intake must still move the spool.
    server = Server(pulse_bin, tmp_path, communities="")
    server.start()
    body = json.dumps([event(1, source="generic"), event(2, source="generic")]).encode()
    assert server.post("/v1/events", body, {"authorization": f"Bearer {TOKEN}"})[0] == 200
    assert server.stop() == 0
    p = server.pulse("run", "--as-of", "2026-11-23")
    assert p.returncode == 0, p.stderr
    assert "c1 as_of 2026-11-23" in p.stdout
    assert "spool" in server.pulse("runs").stdout


def test_a_full_spool_answers_503_with_retry_after(pulse_bin, tmp_path):
    server = Server(pulse_bin, tmp_path, spool_max="1KiB")
    server.start()
    auth = {"authorization": f"Bearer {TOKEN}"}
    statuses = []
    for i in range(20):
        status, _, headers = server.post("/v1/events", json.dumps(event(i, source="generic")).encode(), auth)
        statuses.append(status)
        if status == 503:
            assert headers.get("retry-after") == "60"
            break
    assert statuses[0] == 200 and statuses[-1] == 503, statuses
    assert server.stop() == 0


def test_serve_schedules_a_community_whose_first_events_arrive_by_webhook(pulse_bin, tmp_path):
    server = Server(pulse_bin, tmp_path, communities="", report_cron="*/2 * * * * *",
                    ingest_cron="*/2 * * * * *")
    server.start()
    body = json.dumps([event(1, source="generic"), event(2, source="generic")]).encode()
    assert server.post("/v1/events", body, {"authorization": f"Bearer {TOKEN}"})[0] == 200
    runs = tmp_path / "state" / "runs.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline:
        text = runs.read_text() if runs.exists() else ""
        if '"kind":"scheduled"' in text and '"status":"succeeded"' in text:
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"no scheduled run for c1: {runs.read_text() if runs.exists() else ''}")
    assert server.stop() == 0
    assert list((tmp_path / "lake" / "reports" / "c1").iterdir())


def test_a_failing_export_is_set_aside_and_other_files_and_communities_go_on(pulse_bin, tmp_path):
    """A Slack `ts` with a multi-byte character (it once panicked on a byte slice) and a file that
    is no zip at all: each is reported, moved to `rejected/` with a reason file, and never tried
    again; the good files of the same folder and of another community are imported."""
    import zipfile
    slack, discord = tmp_path / "drop" / "slack", tmp_path / "drop" / "discord2"
    slack.mkdir(parents=True)
    discord.mkdir(parents=True)
    (tmp_path / "pulse.toml").write_text(textwrap.dedent("""
        lake = "lake"
        state_dir = "state"

        [[communities]]
        id = "c1"

        [[communities]]
        id = "c2"

        [[ingest.exports]]
        path = "drop/slack"
        format = "slack_export"
        community = "c1"

        [[ingest.exports]]
        path = "drop/discord2"
        format = "discord_export"
        community = "c2"
    """))
    messages = (FIXTURES / "slack_export_message.json").read_text()
    for name, text in [("a-bad-ts.zip", messages.replace('"1736554636.807919"', '"1736554636.80791é"')),
                       ("b-good.zip", messages)]:
        with zipfile.ZipFile(slack / name, "w") as z:
            z.write(FIXTURES / "slack_export_users.json", "users.json")
            z.writestr("general/2025-01-11.json", text)
    (slack / "c-not-a-zip.zip").write_text("hello")
    (discord / "general.json").write_bytes((FIXTURES / "discordchatexporter.json").read_bytes())

    def pulse(*args):
        return subprocess.run([pulse_bin, "--config", "pulse.toml", *args], cwd=tmp_path,
                              capture_output=True, text=True)

    p = pulse("run", "--as-of", "2026-11-23")
    assert "panicked" not in p.stderr, p.stderr
    assert p.returncode == 0, p.stderr
    rows = json.loads(pulse("query", "--format", "json",
                            "SELECT community_id, count(*) AS n FROM events GROUP BY 1 ORDER BY 1").stdout)
    assert {r["community_id"]: r["n"] for r in rows} == {"c1": 7, "c2": 5}, rows
    assert sorted(f.name for f in slack.iterdir() if f.is_file()) == ["b-good.zip"]
    rejected = slack / "rejected"
    assert sorted(f.name for f in rejected.iterdir()) == [
        "a-bad-ts.zip", "a-bad-ts.zip.reason.txt", "c-not-a-zip.zip", "c-not-a-zip.zip.reason.txt"]
    assert "bad ts" in (rejected / "a-bad-ts.zip.reason.txt").read_text()
    assert "not a Slack export zip" in (rejected / "c-not-a-zip.zip.reason.txt").read_text()
    assert "a-bad-ts.zip" in p.stderr, p.stderr
    runs = (tmp_path / "state" / "runs.jsonl").read_text()
    assert "a-bad-ts.zip" in runs and "rejected" in runs, runs
    # Never tried again.
    p = pulse("run", "--as-of", "2026-11-23")
    assert p.returncode == 0 and "a-bad-ts" not in p.stderr, p.stderr


def test_a_signature_header_with_40000_candidates_is_refused_quickly(server):
    body = json.dumps([event(i) for i in range(400)]).encode()[:60000]
    ts = str(int(time.time()))
    slow = {"webhook-id": "msg_1", "webhook-timestamp": ts, "webhook-signature": " ".join(["v1,AAAA"] * 40_000)}
    stripe = {"stripe-signature": f"t={ts}," + ",".join(["v1=00"] * 40_000)}
    health = []

    def probe():
        for _ in range(10):
            started = time.time()
            assert server.get("/healthz")[0] == 200
            health.append(time.time() - started)
            time.sleep(0.05)

    for path, headers in [("/v1/webhooks/app", slow), ("/v1/webhooks/pay", stripe)]:
        health.clear()
        prober = threading.Thread(target=probe)
        started = time.time()
        prober.start()
        status, answer, _ = server.post(path, body, headers)
        elapsed = time.time() - started
        prober.join()
        assert status in (400, 401), (status, answer)
        assert elapsed < 1.0, f"{path}: {elapsed:.1f} s"
        assert max(health) < 0.5, health


def test_422_lists_at_most_100_reasons(pulse_bin, tmp_path):
    server = Server(pulse_bin, tmp_path, max_body="1MiB")
    server.start()
    body = b"[" + b",".join([b"{}"] * ((1 << 20) // 3 - 1)) + b"]"
    assert len(body) < 1 << 20
    req = urllib.request.Request(f"http://127.0.0.1:{server.port}/v1/events", data=body, method="POST",
                                 headers={"content-type": "application/json", "authorization": f"Bearer {TOKEN}"})
    try:
        urllib.request.urlopen(req, timeout=30)
        raise AssertionError("accepted")
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    assert status == 422
    assert len(raw) < 64 << 10, f"{len(raw)} bytes answered"
    answer = json.loads(raw)
    assert len(answer["rejected"]) == 100 and answer["rejected_count"] == (1 << 20) // 3 - 1
    assert answer["rejected"][0]["index"] == 0
    assert server.stop() == 0


def test_the_spool_gauge_follows_an_external_compaction(pulse_bin, tmp_path):
    """`pulse run` beside `pulse serve` moves the sealed spool segments (8 MiB each) into the
    lake; serve must see the space come back instead of answering 503 "spool full" forever."""
    server = Server(pulse_bin, tmp_path, spool_max="9MiB", max_body="1MiB")
    server.start()
    auth = {"authorization": f"Bearer {TOKEN}"}
    pad = "x" * 900
    statuses = []
    for i in range(30):
        batch = [event(i * 1000 + j, source="generic", body=pad) for j in range(900)]
        status = server.post("/v1/events", json.dumps(batch).encode(), auth)[0]
        statuses.append(status)
        if status == 503:
            break
    assert statuses[-1] == 503 and statuses.count(200) >= 8, statuses
    p = server.pulse("run", "--as-of", "2026-11-23")
    assert p.returncode == 0, p.stderr
    status, answer, _ = server.post("/v1/events", json.dumps(event(99_999, source="generic")).encode(), auth)
    assert status == 200, answer
    assert server.stop() == 0


def test_concurrent_requests_do_not_overshoot_the_spool_limit(pulse_bin, tmp_path):
    server = Server(pulse_bin, tmp_path, spool_max="4KiB")
    server.start()
    auth = {"authorization": f"Bearer {TOKEN}"}
    gate = threading.Barrier(40)

    def send(i):
        body = json.dumps(event(i, source="generic", body="y" * 600)).encode()
        gate.wait()
        return server.post("/v1/events", body, auth)[0]

    with concurrent.futures.ThreadPoolExecutor(40) as pool:
        statuses = list(pool.map(send, range(40)))
    assert set(statuses) <= {200, 503} and 200 in statuses and 503 in statuses, statuses
    assert server.stop() == 0
    spooled = sum(f.stat().st_size for f in (tmp_path / "state" / "spool").glob("segment-*.log"))
    assert spooled <= 4096, f"{spooled} bytes spooled over a 4 KiB limit ({statuses.count(200)} accepted)"


def slow_loris(port, stop, closed, body=False, index=0):
    """Send a request a byte at a time; record when the server closes the connection."""
    import socket
    s = socket.create_connection(("127.0.0.1", port))
    head = (f"POST /v1/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\n"
            f"content-type: application/json\r\ncontent-length: 100000\r\n\r\n")
    started = time.time()
    try:
        if body:
            s.sendall(head.encode())
            data = b"[" * 100000
        else:
            data = (head + "x" * 100000).encode()
        s.settimeout(0.2)
        for b in data:
            if stop.is_set():
                return
            s.send(bytes([b]))
            try:
                if s.recv(4096) == b"":
                    break
            except socket.timeout:
                pass
            except OSError:
                break
    except OSError:
        pass
    finally:
        closed[index] = time.time() - started
        s.close()


def test_slow_clients_are_cut_off_and_do_not_hold_up_healthz(pulse_bin, tmp_path):
    server = Server(pulse_bin, tmp_path, ingest="""
        header_timeout_secs = 1
        request_timeout_secs = 2
    """)
    server.start()
    stop, closed = threading.Event(), {}
    lorises = [threading.Thread(target=slow_loris, args=(server.port, stop, closed, i % 2 == 1, i))
               for i in range(20)]
    for t in lorises:
        t.start()
    try:
        for _ in range(10):
            started = time.time()
            assert server.get("/healthz")[0] == 200
            assert time.time() - started < 0.5
            time.sleep(0.2)
        for t in lorises:
            t.join(timeout=6)
        assert len(closed) == 20, f"{20 - len(closed)} slow clients still connected after 8 s"
        assert max(closed.values()) < 5, closed
    finally:
        stop.set()
    started = time.time()
    assert server.stop() == 0
    assert time.time() - started < 5


def test_sigterm_waits_for_slow_requests_only_until_the_deadline(pulse_bin, tmp_path):
    server = Server(pulse_bin, tmp_path, ingest="""
        header_timeout_secs = 60
        request_timeout_secs = 60
        shutdown_grace_secs = 2
    """)
    server.start()
    stop, closed = threading.Event(), {}
    lorises = [threading.Thread(target=slow_loris, args=(server.port, stop, closed, i % 2 == 1, i))
               for i in range(4)]
    for t in lorises:
        t.start()
    time.sleep(1)
    started = time.time()
    server.proc.send_signal(signal.SIGTERM)
    try:
        code = server.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        raise AssertionError("serve still running 10 s after SIGTERM")
    finally:
        stop.set()
    assert code == 0
    assert time.time() - started < 5


def test_connections_beyond_max_connections_wait_for_a_free_slot(pulse_bin, tmp_path):
    import socket
    server = Server(pulse_bin, tmp_path, ingest="""
        header_timeout_secs = 2
        max_connections = 4
    """)
    server.start()
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(4)]
    time.sleep(0.3)
    started = time.time()
    assert server.get("/healthz")[0] == 200
    waited = time.time() - started
    for s in idle:
        s.close()
    # Answered only once the idle connections were cut off (header timeout): the cap held.
    assert 1.0 < waited < 4.5, waited
    assert server.stop() == 0


def exported_series(text):
    """Parse /metrics with prometheus_client's OpenMetrics parser (the format the page
    declares; strict: `# EOF`, counter `_total` suffixes) and check that its older Prometheus
    text parser reads it too; returns {family: type} and every sample name a query can use, of
    empty families too."""
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics
    from prometheus_client.parser import text_string_to_metric_families as prometheus

    families = {f.name: f.type for f in openmetrics(text)}
    assert {s.name for f in prometheus(text) for s in f.samples} <= \
        {s.name for f in openmetrics(text) for s in f.samples}
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    names = {name + s for name, kind in families.items() for s in suffixes[kind]}
    return families, names


def test_metrics_page_is_openmetrics_and_the_dashboard_queries_only_exported_series(pulse_bin, tmp_path):
    """A scheduled run (and the compaction before it) in the serving process: every family is on the page with
    its type, the counters count, and the Grafana dashboard in docs/ asks only for series the
    page has."""
    # One scheduled run (c1 is in UTC), 15 s from now; it compacts the spool first.
    fire = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=15)
    server = Server(pulse_bin, tmp_path, report_cron=f"{fire.second} {fire.minute} {fire.hour} * * *",
                    communities='[[communities]]\nid = "c1"\nreport_to = ["ops@example.com"]\n',
                    extra='[[sinks]]\nkind = "file"\npath = "out/ranked"\n')
    server.start()
    auth = {"authorization": f"Bearer {TOKEN}"}
    batch = [event(1, source="generic"), event(2, source="generic")]
    assert server.post("/v1/events", json.dumps(batch).encode(), auth)[0] == 200
    assert server.post("/v1/webhooks/forum", b"{}", {"X-Discourse-Event": "post_created"})[0] == 401
    deadline, text = time.time() + 90, ""
    while time.time() < deadline and "pulse_runs_total{" not in text:
        time.sleep(0.5)
        try:
            text = server.get("/metrics")[1]
        except OSError:
            pass  # busy with the run
    assert server.stop() == 0
    families, names = exported_series(text)
    assert families == {
        "pulse_ingest_events": "counter", "pulse_http_request_seconds": "histogram",
        "pulse_spool_bytes": "gauge", "pulse_spool_fsync_seconds": "histogram",
        "pulse_spool_compaction_seconds": "histogram", "pulse_runs": "counter",
        "pulse_run_stage_seconds": "histogram", "pulse_deliveries": "counter", "pulse_emails": "counter",
        "pulse_last_success_timestamp_seconds": "gauge",
    }, text
    assert 'pulse_ingest_events_total{source="events",outcome="accepted"} 2' in text
    assert 'pulse_ingest_events_total{source="forum",outcome="unauthorized"} 1' in text
    assert 'pulse_http_request_seconds_count{route="/v1/events"} 1' in text
    assert 'pulse_runs_total{outcome="succeeded"}' in text
    assert 'pulse_run_stage_seconds_count{stage="models"}' in text
    assert 'pulse_spool_compaction_seconds_count{outcome="ok"}' in text
    assert 'pulse_emails_total{outcome="sent"} 1' in text
    assert 'pulse_deliveries_total{sink_kind="file",outcome="delivered"} 1' in text
    last = [line for line in text.splitlines() if line.startswith('pulse_last_success_timestamp_seconds{community="c1"}')]
    assert len(last) == 1 and abs(float(last[0].split()[-1]) - time.time()) < 120, text

    dashboard = json.loads((Path(__file__).parents[2] / "docs" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 8
    for expr in exprs:
        used = set(re.findall(r"\bpulse_[a-z_]+", expr))
        assert used and used <= names, (expr, used - names)
