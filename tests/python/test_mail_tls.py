"""Report mail over TLS against a real SMTP server (aiosmtpd) with a certificate from a CA the
test makes (trustme): STARTTLS and implicit TLS deliver with AUTH; an untrusted certificate and
a certificate for another name fail naming the server and the reason; AUTH without TLS is
refused at config load unless allowed."""
import ssl
import subprocess
import textwrap

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from helpers import free_port

AS_OF = "2026-11-23"
USER, PASSWORD = "pulse", "s3cret-over-tls"


class Recorder:
    """Keeps each message with whether it came over TLS and who logged in."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        tls = server.transport.get_extra_info("ssl_object") is not None
        self.messages.append({"tls": tls, "authenticated": session.authenticated,
                              "login": session.auth_data, "rcpt": envelope.rcpt_tos})
        return "250 Message accepted"


def authenticate(server, session, envelope, mechanism, auth_data):
    ok = (auth_data.login, auth_data.password) == (USER.encode(), PASSWORD.encode())
    return AuthResult(success=ok, auth_data=auth_data.login if ok else None)


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture
def smtp(ca):
    """Start a server with a certificate for `name`: mode "starttls" (587-style: plain, then
    STARTTLS, which it requires) or "tls" (465-style: TLS from the first byte)."""
    servers = []

    def start(mode, name="localhost"):
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(name).configure_cert(context)
        handler = Recorder()
        # aiosmtpd's auth_require_tls knows STARTTLS only; on an implicit TLS connection it would
        # hide AUTH, so there the handler's record of the TLS transport is the proof.
        tls = ({"tls_context": context, "require_starttls": True, "auth_require_tls": True} if mode == "starttls"
               else {"ssl_context": context, "auth_require_tls": False})
        controller = Controller(handler, hostname="127.0.0.1", port=free_port(), authenticator=authenticate, **tls)
        controller.start()
        servers.append(controller)
        return handler, controller.port

    yield start
    for s in servers:
        s.stop()


@pytest.fixture(scope="module")
def events(pulse_bin, tmp_path_factory):
    data = tmp_path_factory.mktemp("events") / "events.ndjson"
    subprocess.run([pulse_bin, "generate", "--members", "60", "--days", "40", "--communities", "1",
                    "--seed", "5", "--end", AS_OF, "--out", str(data)], check=True, capture_output=True)
    return data


def setup(pulse_bin, tmp_path, events, email):
    (tmp_path / "pulse.toml").write_text(textwrap.dedent("""
        lake = "lake"
        state_dir = "state"

        [[communities]]
        id = "python-camp"
        timezone = "Asia/Shanghai"
        report_to = ["ops@example.com"]

        [report]
        from = "Community Pulse <pulse@example.com>"

        [email]
        transport = "smtp"
        timeout_secs = 5
        max_attempts = 1
        password_env = "PULSE_TEST_SMTP_PASSWORD"
    """) + textwrap.dedent(email))
    p = run(pulse_bin, tmp_path, "import", str(events))
    assert p.returncode == 0, p.stderr


def run(pulse_bin, tmp_path, *args):
    return subprocess.run([pulse_bin, "--config", str(tmp_path / "pulse.toml"), *args], cwd=tmp_path,
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin",
                                                               "PULSE_TEST_SMTP_PASSWORD": PASSWORD})


@pytest.mark.parametrize("mode", ["starttls", "tls"])
def test_mail_is_delivered_over_tls_with_auth(pulse_bin, tmp_path, smtp, ca, events, mode):
    handler, port = smtp(mode)
    ca.cert_pem.write_to_path(str(tmp_path / "relay-ca.pem"))
    setup(pulse_bin, tmp_path, events, f"""
        host = "localhost"
        port = {port}
        tls = "{mode}"
        username = "{USER}"
        ca_file = "relay-ca.pem"
    """)
    assert run(pulse_bin, tmp_path, "check-config").returncode == 0
    p = run(pulse_bin, tmp_path, "run", "--as-of", AS_OF)
    assert p.returncode == 0, p.stderr
    assert handler.messages == [{"tls": True, "authenticated": True, "login": USER.encode(),
                                 "rcpt": ["ops@example.com"]}]
    assert PASSWORD not in p.stderr + p.stdout


@pytest.mark.parametrize("mode,label", [("starttls", "STARTTLS"), ("tls", "implicit TLS")])
def test_an_untrusted_certificate_fails_naming_the_server_and_the_reason(pulse_bin, tmp_path, smtp, events, mode, label):
    handler, port = smtp(mode)
    setup(pulse_bin, tmp_path, events, f"""
        host = "localhost"
        port = {port}
        tls = "{mode}"
        username = "{USER}"
    """)
    p = run(pulse_bin, tmp_path, "run", "--as-of", AS_OF)
    assert p.returncode == 4, p.stderr
    print(p.stderr)
    assert f"SMTP server localhost:{port} ({label})" in p.stderr
    assert "UnknownIssuer" in p.stderr and "email.ca_file" in p.stderr
    assert handler.messages == []
    # Still queued: the next run, with the CA configured, sends it.
    assert len(list((tmp_path / "state" / "mail" / "queue").glob("*.eml"))) == 1


def test_a_certificate_for_another_name_fails_naming_the_server_and_the_reason(pulse_bin, tmp_path, smtp, ca, events):
    handler, port = smtp("starttls", name="mail.example.test")
    ca.cert_pem.write_to_path(str(tmp_path / "relay-ca.pem"))
    setup(pulse_bin, tmp_path, events, f"""
        host = "localhost"
        port = {port}
        tls = "starttls"
        username = "{USER}"
        ca_file = "relay-ca.pem"
    """)
    p = run(pulse_bin, tmp_path, "run", "--as-of", AS_OF)
    assert p.returncode == 4, p.stderr
    print(p.stderr)
    assert f"SMTP server localhost:{port} (STARTTLS)" in p.stderr
    assert "NotValidForName" in p.stderr or "not valid for name" in p.stderr
    assert "does not name email.host" in p.stderr
    assert handler.messages == []


def test_auth_without_tls_is_refused_at_config_load_unless_allowed(pulse_bin, tmp_path):
    config = tmp_path / "pulse.toml"
    plain = textwrap.dedent(f"""
        [email]
        transport = "smtp"
        host = "relay.internal"
        port = 25
        tls = "none"
        username = "{USER}"
    """)
    config.write_text(plain)
    p = run(pulse_bin, tmp_path, "check-config")
    assert p.returncode == 2, p.stderr
    assert str(config) in p.stderr and "email.username" in p.stderr and 'tls = "none"' in p.stderr
    assert "allow_plaintext_auth" in p.stderr
    config.write_text(plain + "allow_plaintext_auth = true\n")
    p = run(pulse_bin, tmp_path, "check-config")
    assert p.returncode == 0, p.stderr


def test_a_ca_file_that_is_missing_or_not_pem_is_a_config_error(pulse_bin, tmp_path):
    config = tmp_path / "pulse.toml"
    base = '[email]\ntransport = "smtp"\nhost = "relay.internal"\n'
    config.write_text(base + 'ca_file = "nope.pem"\n')
    p = run(pulse_bin, tmp_path, "check-config")
    assert p.returncode == 2 and "email.ca_file" in p.stderr and "nope.pem" in p.stderr, p.stderr
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    config.write_text(base + 'ca_file = "junk.pem"\n')
    p = run(pulse_bin, tmp_path, "check-config")
    assert p.returncode == 2 and "junk.pem" in p.stderr and "no PEM certificate" in p.stderr, p.stderr
