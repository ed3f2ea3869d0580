"""The emailed report against a real SMTP server (aiosmtpd) on loopback: message structure,
inline charts, Chinese text, sent-once, a server that rejects and one that is down."""
import csv
import email
import email.policy
import io
import subprocess
import textwrap

import pytest
from helpers import free_port
from aiosmtpd.controller import Controller

AS_OF = "2026-11-23"


class Recorder:
    """An SMTP handler that keeps every message and rejects listed recipients with 550."""

    def __init__(self, reject=()):
        self.messages = []
        self.reject = set(reject)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.reject:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.rcpt_tos, envelope.original_content))
        return "250 Message accepted"


@pytest.fixture
def smtp():
    servers = []

    def start(reject=(), port=None):
        handler = Recorder(reject)
        controller = Controller(handler, hostname="127.0.0.1", port=port or free_port())
        controller.start()
        servers.append(controller)
        return handler, controller.port

    yield start
    for s in servers:
        s.stop()


def write_config(tmp_path, port, recipients=("ops@example.com",)):
    to = ", ".join(f'"{r}"' for r in recipients)
    (tmp_path / "pulse.toml").write_text(textwrap.dedent(f"""
        lake = "lake"
        state_dir = "state"

        [[communities]]
        id = "python-camp"
        name = "Python 实战营"
        timezone = "Asia/Shanghai"
        locale = "zh-CN"
        report_to = [{to}]

        [[communities]]
        id = "data-circle"
        name = "Data Circle"
        timezone = "America/New_York"
        locale = "en"
        report_to = ["lead@example.com"]

        [report]
        from = "Community Pulse <pulse@example.com>"

        [email]
        transport = "smtp"
        host = "127.0.0.1"
        port = {port}
        tls = "none"
        timeout_secs = 5
        max_attempts = 2
        retry_initial_ms = 100
    """))


def run(pulse_bin, tmp_path, *args):
    return subprocess.run([pulse_bin, "--config", str(tmp_path / "pulse.toml"), *args],
                          cwd=tmp_path, capture_output=True, text=True)


@pytest.fixture
def community(pulse_bin, tmp_path):
    data = tmp_path / "events.ndjson"
    subprocess.run([pulse_bin, "generate", "--members", "400", "--days", "90", "--communities", "2",
                    "--seed", "3", "--end", AS_OF, "--out", str(data)], check=True, capture_output=True)
    return data


def import_events(pulse_bin, tmp_path, data):
    p = run(pulse_bin, tmp_path, "import", str(data))
    assert p.returncode == 0, p.stderr


def parse(raw):
    return email.message_from_bytes(raw, policy=email.policy.default)


def test_report_arrives_as_html_text_and_inline_charts(pulse_bin, tmp_path, smtp, community):
    handler, port = smtp()
    write_config(tmp_path, port)
    import_events(pulse_bin, tmp_path, community)
    p = run(pulse_bin, tmp_path, "run", "--as-of", AS_OF)
    assert p.returncode == 0, p.stderr
    assert len(handler.messages) == 2
    by_rcpt = {tuple(rcpts): parse(raw) for rcpts, raw in handler.messages}
    zh = by_rcpt[("ops@example.com",)]
    en = by_rcpt[("lead@example.com",)]

    # Subject names the community and the period, in the community's language.
    assert zh["Subject"] == "【Python 实战营】社区运营报告 2026年10月24日 – 2026年11月22日"
    assert en["Subject"] == "[Data Circle] Community report, 24 Oct 2026 – 22 Nov 2026"
    assert zh["From"] == "Community Pulse <pulse@example.com>"
    assert zh["Message-ID"].startswith("<python-camp.2026-11-23.")

    for msg in (zh, en):
        assert msg.get_content_type() == "multipart/alternative"
        text_part, related = msg.get_payload()
        assert text_part.get_content_type() == "text/plain"
        assert related.get_content_type() == "multipart/related"
        html_part, *images = related.get_payload()
        assert html_part.get_content_type() == "text/html"
        html = html_part.get_content()
        assert len(images) == 2
        for img in images:
            assert img.get_content_type() == "image/png"
            assert img["Content-Disposition"].startswith("inline")
            cid = img["Content-ID"].strip("<>")
            assert f'src="cid:{cid}"' in html
            assert img.get_content().startswith(b"\x89PNG\r\n\x1a\n")
        assert "<script" not in html and "<link" not in html

    # Chinese survives the encoding, in both parts.
    zh_html = zh.get_payload()[1].get_payload()[0].get_content()
    zh_text = zh.get_payload()[0].get_content()
    for s in ("核心指标", "Python 实战营", "成员需求", "流失风险成员"):
        assert s in zh_html and s in zh_text
    assert "Headline numbers" in en.get_payload()[0].get_content()

    # Sent once: the same as_of again sends nothing; --resend sends again.
    p = run(pulse_bin, tmp_path, "run", "--as-of", AS_OF)
    assert p.returncode == 0, p.stderr
    assert len(handler.messages) == 2
    assert "already had it" in p.stdout
    p = run(pulse_bin, tmp_path, "run", "--as-of", AS_OF, "--community", "data-circle", "--resend")
    assert p.returncode == 0, p.stderr
    assert len(handler.messages) == 3
    assert parse(handler.messages[2][1])["Message-ID"] != en["Message-ID"]


def test_report_numbers_equal_the_metric_tables(pulse_bin, tmp_path, smtp, community):
    handler, port = smtp()
    write_config(tmp_path, port)
    import_events(pulse_bin, tmp_path, community)
    assert run(pulse_bin, tmp_path, "run", "--as-of", AS_OF).returncode == 0
    text = next(parse(raw) for rcpts, raw in handler.messages if rcpts == ["lead@example.com"])
    text = text.get_payload()[0].get_content()

    def query(sql):
        p = run(pulse_bin, tmp_path, "query", "--format", "csv", sql)
        assert p.returncode == 0, p.stderr
        return list(csv.DictReader(io.StringIO(p.stdout)))

    where = f"community_id = 'data-circle' AND as_of = DATE '{AS_OF}'"
    kpis = {r["metric"]: r for r in query(f"SELECT metric, value, prev_value FROM kpis WHERE {where}")}
    labels = {"members": "Members", "posts": "Posts", "comments": "Comments",
              "active_members": "Active members", "new_members": "New members"}
    for metric, label in labels.items():
        value, prev = int(float(kpis[metric]["value"])), int(float(kpis[metric]["prev_value"]))
        assert f"- {label}: {value:,} (Previous {prev:,})" in text, metric

    top = query(f"SELECT rank, member_id, activity_score, points FROM ranked_members WHERE {where} "
                "ORDER BY rank LIMIT 3")
    for r in top:
        line = f"{r['rank']}. {r['member_id']} ["
        assert line in text
        assert f"Score {float(r['activity_score']):,.2f}" in text.split(line)[1].splitlines()[0]

    influence = query(f"SELECT influence FROM community_influence WHERE {where}")[0]
    assert f"Community influence (0.3·S + 0.2·N + 0.2·D + 0.3·R): {float(influence['influence']):,.2f}" in text

    tiers = query(f"SELECT tier, count(*) AS n FROM member_activity WHERE {where} GROUP BY tier")
    names = {"contributor": "Contributor", "active": "Active", "new": "New", "regular": "Regular",
             "at_risk": "At risk", "dormant": "Dormant", "left": "Left", "banned": "Banned"}
    for r in tiers:
        assert f"- {names[r['tier']]}: {int(r['n']):,}" in text

    demand = query(f"SELECT taxonomy, category, posts, priority_rank FROM demand_categories WHERE {where} "
                   "AND taxonomy = 'needs' ORDER BY priority_rank")
    # Categories are numbered by priority among themselves; `uncategorized` comes last, unnumbered.
    categories = [r for r in demand if r["category"] != "uncategorized"]
    for i, r in enumerate(categories, 1):
        assert f"{i}. {r['category']}: Posts {int(r['posts']):,} (" in text
    uncategorized = next(r for r in demand if r["category"] == "uncategorized")
    assert f"- Uncategorized: Posts {int(uncategorized['posts']):,} (" in text
    last = text.index(f"{len(categories)}. {categories[-1]['category']}:")
    assert last < text.index("- Uncategorized:", last) < text.index("Emerging topics", last)


def test_a_rejected_recipient_is_named_and_the_others_are_sent(pulse_bin, tmp_path, smtp, community):
    handler, port = smtp(reject={"gone@example.com"})
    write_config(tmp_path, port, recipients=("ops@example.com", "gone@example.com"))
    import_events(pulse_bin, tmp_path, community)
    p = run(pulse_bin, tmp_path, "run", "--as-of", AS_OF, "--community", "python-camp")
    assert p.returncode == 4, p.stderr
    assert "gone@example.com" in p.stderr and "550" in p.stderr and "mailbox unavailable" in p.stderr
    assert [r for r, _ in handler.messages] == [["ops@example.com"]]
    assert list((tmp_path / "state" / "mail" / "rejected").glob("*.eml"))
    # A rejection is final: the next run does not try that recipient again.
    p = run(pulse_bin, tmp_path, "run", "--as-of", AS_OF, "--community", "python-camp")
    assert p.returncode == 0, p.stderr
    assert len(handler.messages) == 1


def test_a_server_that_is_down_fails_the_run_and_the_next_run_sends(pulse_bin, tmp_path, smtp, community):
    port = free_port()  # nothing listens here yet
    write_config(tmp_path, port)
    import_events(pulse_bin, tmp_path, community)
    p = run(pulse_bin, tmp_path, "run", "--as-of", AS_OF, "--community", "python-camp")
    assert p.returncode == 4, p.stderr
    assert "still queued for the next run" in p.stderr
    assert "ops@example.com" in p.stderr and "after 2 attempt(s)" in p.stderr
    assert len(list((tmp_path / "state" / "mail" / "queue").glob("*.eml"))) == 1

    handler, _ = smtp(port=port)
    # The next run (here for the next day) sends the queued report as well as its own.
    p = run(pulse_bin, tmp_path, "run", "--as-of", "2026-11-24", "--community", "python-camp")
    assert p.returncode == 0, p.stderr
    subjects = sorted(parse(raw)["Subject"] for _, raw in handler.messages)
    assert len(subjects) == 2
    assert "2026年10月24日 – 2026年11月22日" in subjects[0]
    assert not list((tmp_path / "state" / "mail" / "queue").glob("*.eml"))
    ledger = (tmp_path / "state" / "emails.jsonl").read_text().splitlines()
    assert sum('"status":"sent"' in line for line in ledger) == 2
    assert sum('"status":"failed"' in line for line in ledger) == 1
