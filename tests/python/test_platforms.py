"""Live platform callbacks over real HTTP on loopback (`pulse serve`): Slack Events API and
WeCom (企业微信). Official vectors and documented payloads from tests/fixtures/<platform>/
(see the README there); forged, stale, tampered, wrong-receive-id and undecryptable requests
are refused and store nothing."""
import base64
import hashlib
import hmac
import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from test_ingest import Server, lake_events

FIXTURES = Path(__file__).parents[1] / "fixtures"
SLACK = FIXTURES / "slack"
SLACK_EXAMPLE = json.loads((SLACK / "signing_example.json").read_text())
SLACK_SECRET = SLACK_EXAMPLE["signing_secret"]

SLACK_SOURCE = """
    [[ingest.sources]]
    name = "chat"
    kind = "slack"
    community = "c1"
    secret_env = "PULSE_TEST_SLACK"
"""


def slack_headers(body, ts=None, secret=SLACK_SECRET, retry=None):
    ts = str(ts or int(time.time()))
    sig = hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    headers = {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={sig}"}
    if retry:
        headers.update({"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"})
    return headers


def test_slack_events_api(pulse_bin, tmp_path):
    server = Server(pulse_bin, tmp_path, extra=SLACK_SOURCE)
    server.env["PULSE_TEST_SLACK"] = SLACK_SECRET
    server.start()
    url = "/v1/webhooks/chat"

    # URL verification: signed, answered with the challenge; unsigned: refused.
    challenge = (SLACK / "url_verification.json").read_bytes()
    status, body, _ = server.post(url, challenge, slack_headers(challenge))
    assert (status, body) == (200, {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
    assert server.post(url, challenge)[0] == 401

    # The documented payloads, each accepted; a retry of the message (same event, new
    # signature, X-Slack-Retry-Num) is accepted again and stored once.
    for name in ["message", "thread_reply", "reaction_added", "member_joined_channel", "member_left_channel"]:
        payload = (SLACK / f"{name}.json").read_bytes()
        assert server.post(url, payload, slack_headers(payload))[:2] == (200, {"accepted": 1}), name
    message = (SLACK / "message.json").read_bytes()
    assert server.post(url, message, slack_headers(message, retry=1))[:2] == (200, {"accepted": 1})

    # Refused, and nothing stored: another secret, a stale timestamp, a tampered body, no
    # signature, a signature that is not v0, a body that is not JSON.
    forged = json.loads(message)
    forged["event"].update(ts="1355517999.000001", user="UFORGED")
    forged = json.dumps(forged).encode()
    assert server.post(url, forged, slack_headers(forged, secret="not-the-secret"))[0] == 401
    assert server.post(url, forged, slack_headers(forged, ts=int(time.time()) - 301))[0] == 401
    assert server.post(url, forged, slack_headers(message))[0] == 401
    assert server.post(url, forged, {"X-Slack-Request-Timestamp": str(int(time.time()))})[0] == 401
    bad = slack_headers(forged)
    bad["X-Slack-Signature"] = bad["X-Slack-Signature"].replace("v0=", "v1=")
    assert server.post(url, forged, bad)[0] == 401
    assert server.post(url, b"{not json", slack_headers(b"{not json"))[0] == 400
    # The official signing example (a slash command body, not an event) verifies, then is
    # refused as not JSON: proof the signature check accepted it.
    example = SLACK_EXAMPLE["body"].encode()
    assert server.post(url, example, slack_headers(example))[0] == 400

    rows = lake_events(server, "source, event_id, member_id, event_type, parent_id, target_member_id, content_id, body")
    chat = [r for r in rows if r["source"] == "chat"]
    assert [(r["event_id"], r["event_type"], r["member_id"]) for r in chat] == [
        ("C123ABC456:1355517523.000005", "post", "chat:U123ABC456"),
        ("C123ABC456:1355517536.000001", "comment", "chat:U222222222"),
        ("C123ABC456:1360782400.498405:react:thumbsup:U123ABC456", "like", "chat:U123ABC456"),
        ("Ev0PV52K25", "join", "chat:W123ABC456"),
        ("Ev0PV52K26", "leave", "chat:W123ABC456"),
    ]
    reply, like = chat[1], chat[2]
    assert reply["parent_id"] == "C123ABC456:1355517523.000005" and reply["target_member_id"] == "chat:U123ABC456"
    assert like["target_member_id"] == "chat:U222222222" and like["content_id"] == "C123ABC456:1360782400.498405"
    assert chat[0]["body"] == "Live long and prospect."
    assert "UFORGED" not in json.dumps(rows)
