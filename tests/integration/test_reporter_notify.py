"""Email reports on a real SMTP server (aiosmtpd, STARTTLS + auth, loopback) and commit statuses
against a local HTTP server that records requests; history in a real MariaDB."""

from __future__ import annotations

import datetime as dt
import email
import ipaddress
import json
import secrets
import socket
import threading
import uuid
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr
from sqlalchemy import select

from services.reporter.bootstrap import bootstrap
from services.reporter.history_writer import write_batch
from services.reporter.models import NotificationAttempt
from services.reporter.settings import ReporterSettings
from shared.events import Envelope
from tests.unit.test_reporter_stream import full_build_stream

pytestmark = pytest.mark.integration
CONFIG = "examples/operator/config.yaml"


# -- a real SMTP server with STARTTLS and auth ------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def self_signed(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                       x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = tmp_path / "smtp.crt", tmp_path / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


class Inbox:
    def __init__(self):
        self.messages: list[Message] = []
        self.received = threading.Event()

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd handler hook
        self.messages.append(email.message_from_bytes(envelope.content))
        self.received.set()
        return "250 OK"


class SmtpServer:
    def __init__(self, tmp_path):
        import ssl

        self.cert, key = self_signed(tmp_path)
        self.username, self.password = "kiln", secrets.token_urlsafe(16)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, key)
        self.inbox = Inbox()
        self.port = free_port()
        self.controller = Controller(
            self.inbox, hostname="127.0.0.1", port=self.port, tls_context=context, require_starttls=True,
            auth_required=True, authenticator=self._authenticate,
        )  # fmt: skip

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False)
        given = (auth_data.login.decode(), auth_data.password.decode())
        return AuthResult(success=given == (self.username, self.password))

    def settings(self, **overrides) -> ReporterSettings:
        values = dict(
            smtp_host="127.0.0.1", smtp_port=self.port, smtp_username=self.username,
            smtp_password=SecretStr(self.password), smtp_ca_file=str(self.cert),
            smtp_from="Kiln <kiln@example.com>", smtp_retry_delay_s=0.1, config_path=CONFIG,
            build_url_template="http://kiln.example/builds/{build_id}",
        )  # fmt: skip
        values.update(overrides)
        return ReporterSettings(**values)


@pytest.fixture
def smtp(tmp_path):
    server = SmtpServer(tmp_path)
    server.controller.start()
    yield server
    server.controller.stop()


# -- a local HTTP server standing in for GitHub / Bitbucket ---------------------------------------------


class Recorder(BaseHTTPRequestHandler):
    requests: list[dict] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append({"path": self.path, "auth": self.headers["Authorization"], "body": body})
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def status_server():
    Recorder.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", Recorder.requests
    server.shutdown()


def store(sessions, stream):
    with sessions() as session:
        write_batch(session, stream)


def attempts(sessions, build_id):
    with sessions() as session:
        rows = session.scalars(select(NotificationAttempt).where(NotificationAttempt.build_id == build_id))
        return {(r.channel, r.status) for r in rows}


def parts(message: Message) -> dict[str, str]:
    return {p.get_content_type(): p.get_payload(decode=True).decode() for p in message.walk()
            if not p.is_multipart()}  # fmt: skip


# -- tests ----------------------------------------------------------------------------------------------


def test_email_report_arrives_with_html_and_text_parts(sessions, smtp):
    build_id = str(uuid.uuid4())
    stream = full_build_stream(build_id, notify="dev@example.com")
    store(sessions, stream)
    reporter = bootstrap(smtp.settings(), sessions=sessions)
    reporter.parts["notifier"].build_finished(stream[-1])
    assert smtp.inbox.received.wait(10)
    message = smtp.inbox.messages[0]
    assert message["To"] == "dev@example.com" and "demo #7 succeeded" in message["Subject"]
    body = parts(message)
    assert set(body) == {"text/plain", "text/html"}
    assert "Compilation per factory set" in body["text/html"] and "57.0 MB" in body["text/html"]
    assert "COMPILATION" in body["text/plain"] and build_id in body["text/plain"]
    assert ("email", "sent") in attempts(sessions, build_id)
    # redelivery of build.finished: nobody gets the report twice
    reporter.parts["notifier"].build_finished(stream[-1])
    assert len(smtp.inbox.messages) == 1


def test_raci_sends_to_the_active_roles_of_the_package(sessions, smtp):
    build_id = str(uuid.uuid4())
    stream = full_build_stream(build_id, notify="raci", fail_stage="image")
    store(sessions, stream)
    bootstrap(smtp.settings(), sessions=sessions).parts["notifier"].build_finished(stream[-1])
    assert smtp.inbox.received.wait(10)
    message = smtp.inbox.messages[0]
    assert message["To"] == "dev@example.com, lead@example.com"  # ops@ is inactive
    html = parts(message)["text/html"]
    assert "What failed" in html and "error: exit status 1" in html


def test_smtp_down_is_retried_then_recorded_and_the_build_is_untouched(sessions, tmp_path):
    build_id = str(uuid.uuid4())
    stream = full_build_stream(build_id)
    store(sessions, stream)
    settings = ReporterSettings(smtp_host="127.0.0.1", smtp_port=free_port(), smtp_retry_delay_s=0.05,
                                smtp_attempts=2, config_path=CONFIG)  # fmt: skip
    bootstrap(settings, sessions=sessions).parts["notifier"].build_finished(stream[-1])  # returns normally
    assert ("email", "failed") in attempts(sessions, build_id)
    with sessions() as session:
        row = session.scalars(
            select(NotificationAttempt).where(
                NotificationAttempt.build_id == build_id, NotificationAttempt.channel == "email"
            )
        ).one()
        assert "ConnectionRefused" in row.error
        from shared.history import build_detail

        assert build_detail(session, build_id)["build"]["status"] == "succeeded"


@pytest.mark.parametrize(
    ("kind", "repo_url", "path"),
    [
        ("github", "https://github.com/example/monorepo.git", "/repos/example/monorepo/statuses/c0ffee1"),
        ("bitbucket-cloud", "https://bitbucket.org/team/mono.git",
         "/2.0/repositories/team/mono/commit/c0ffee1/statuses/build"),
        ("bitbucket-server", "https://git.corp.example/scm/PROJ/mono.git",
         "/rest/build-status/1.0/commits/c0ffee1"),
    ],
)  # fmt: skip
def test_commit_status_in_progress_then_final(sessions, status_server, kind, repo_url, path):
    base, requests = status_server
    token = secrets.token_urlsafe(12)
    settings = ReporterSettings(
        github_api_url=base, github_token=SecretStr(token), bitbucket_cloud_api_url=base,
        bitbucket_cloud_token=SecretStr(token), bitbucket_server_url=base,
        bitbucket_server_token=SecretStr(token),
        build_url_template="http://kiln.example/builds/{build_id}",
    )  # fmt: skip
    build_id = str(uuid.uuid4())
    stream = full_build_stream(build_id, notify=None, fail_stage="image")
    data = {**stream[0].data, "source": {"repo_url": repo_url, "ref": "main", "commit": "c0ffee1"},
            "trigger": {"kind": kind, "actor": "ana"}}  # fmt: skip
    requested = Envelope.model_validate({**stream[0].model_dump(), "data": data})  # not model_copy: it caches
    stream = [requested, *stream[1:]]
    store(sessions, stream)
    notifier = bootstrap(settings, sessions=sessions).parts["notifier"]
    notifier.build_started(requested, repo_url, "c0ffee1", kind)
    notifier.build_finished(stream[-1])
    assert [r["path"] for r in requests] == [path, path]
    assert all(r["auth"] == f"Bearer {token}" for r in requests)
    states = [r["body"]["state"] for r in requests]
    assert states == (["pending", "failure"] if kind == "github" else ["INPROGRESS", "FAILED"])
    link = requests[0]["body"].get("target_url") or requests[0]["body"]["url"]
    assert link == f"http://kiln.example/builds/{build_id}"


def test_a_rollback_run_posts_no_commit_status_on_the_old_commit(sessions, status_server):
    """It redeploys an earlier build of that commit: a failed rollback (pruned images) must not
    turn the commit's status red, a succeeded one says nothing new about the commit."""
    from shared.events import BuildFinished, RollbackRequested
    from shared.events.build import Source, Trigger

    base, requests = status_server
    settings = ReporterSettings(
        github_api_url=base, github_token=SecretStr(secrets.token_urlsafe(12)),
        build_url_template="http://kiln.example/builds/{build_id}",
    )  # fmt: skip
    build_id = str(uuid.uuid4())
    requested = RollbackRequested(
        package="demo",
        build_number=9,
        to_build_id=str(uuid.uuid4()),
        to_number=3,
        source=Source(repo_url="https://github.com/example/monorepo.git", ref="main", commit="c0ffee1"),
        trigger=Trigger(kind="rollback", actor="token"),
    )
    finished = BuildFinished(status="failed", failed_stage="deploy", error="build 3's images were pruned: …")
    stream = [
        Envelope.new(e, source="gateway", build_id=build_id, package="demo") for e in (requested, finished)
    ]
    store(sessions, stream)
    bootstrap(settings, sessions=sessions).parts["notifier"].build_finished(stream[-1])
    assert requests == []
