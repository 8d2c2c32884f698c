"""Finding 9 (logs): redaction missed a token used as a URL's user name, `Authorization: Basic`,
and, with the JSON log format, any secret containing `"`, `\\` or non-ASCII characters (it was
masked after json.dumps had escaped it). Proven on the real logging set-up of every service
(`setup_logging`) and on a real gateway process logging in JSON."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from shared import logging as kiln_logging
from shared.redaction import REDACT, Redactor, redact_json
from tests.unit.test_gateway_fakes import make_secrets

ROOT = Path(__file__).parents[2]
# Secrets that change shape when JSON-encoded; generated, never real-looking.
AWKWARD = (
    'quote"' + secrets.token_hex(16),
    "back\\slash" + secrets.token_hex(16),
    "n\u00f6n-\u00e4scii-\u2603-" + secrets.token_hex(16),
    "tab\tnew\nline" + secrets.token_hex(16),
)
TOKEN_AS_USER = "ghp_" + secrets.token_hex(18)
BASIC = base64.b64encode(f"ci:{secrets.token_hex(12)}".encode()).decode()
BEARER = secrets.token_urlsafe(24)


@pytest.fixture
def json_log(monkeypatch) -> io.StringIO:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)  # setup_logging writes to sys.stderr
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    kiln_logging.setup_logging("INFO", fmt="json", secrets=AWKWARD)
    yield stream
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("secret", AWKWARD)
def test_json_log_lines_mask_secrets_that_json_would_escape(json_log, secret):
    log = logging.getLogger("kiln.test")
    log.info("connecting with %s", secret)
    log.info("as repr: %r, as json: %s", secret, json.dumps({"password_field": secret}))
    try:
        raise RuntimeError(f"login failed for {secret}")
    except RuntimeError:
        log.exception("boom")
    output = json_log.getvalue()
    lines = [json.loads(line) for line in output.splitlines()]  # still one JSON document per line
    assert len(lines) == 3 and all("***" in line["message"] for line in lines[:2])
    assert "login failed for ***" in lines[2]["exc"]
    for shape in {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}:
        assert shape not in output
    assert secret not in lines[2]["exc"]


def test_token_as_user_name_and_authorization_headers_are_masked(json_log):
    log = logging.getLogger("kiln.test")
    log.info("git clone https://%s@github.com/example/monorepo.git", TOKEN_AS_USER)
    log.info("headers: {'Authorization': 'Basic %s'}", BASIC)
    log.info("Authorization: Bearer %s", BEARER)
    log.info("env KILN_GIT_TOKEN=%s", BEARER)
    log.info("bare token %s in text", TOKEN_AS_USER)
    output = json_log.getvalue()
    for secret in (TOKEN_AS_USER, BASIC, BEARER):
        assert secret not in output
    assert "https://***@github.com/example/monorepo.git" in output


def test_text_format_masks_the_same():
    line = Redactor(AWKWARD)(f"x {AWKWARD[0]} https://{TOKEN_AS_USER}@h/ Authorization: Basic {BASIC}")
    assert all(s not in line for s in (AWKWARD[0], TOKEN_AS_USER, BASIC)), line


def test_masked_json_stays_valid_and_keeps_what_is_not_secret():
    body = json.dumps(
        {
            "data": {
                "source": {"repo_url": f"https://oauth2:{BEARER}@gitlab.example.com/x.git", "ref": "main"},
                "detail": {"token": BEARER, "tokens": 3},
                "log_tail": [f"Authorization: Basic {BASIC}"],
            }
        }
    )
    masked = json.loads(redact_json(body))["data"]
    assert masked["source"] == {"repo_url": "https://***@gitlab.example.com/x.git", "ref": "main"}
    assert masked["detail"] == {"token": "***", "tokens": 3}
    assert masked["log_tail"] == ["Authorization: Basic ***"]


def test_a_real_gateway_process_logging_json_never_prints_its_secrets(tmp_path):
    """The gateway with the JSON format, its secrets registered, logs a refusal naming its bad
    settings: the exit message lists names, never values."""
    awkward_token = AWKWARD[0] + "-" + secrets.token_hex(8)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KILN_")}
    env = {
        **clean,
        "KILN_LOG_FORMAT": "json",
        "KILN_API_TOKEN": awkward_token,
        "KILN_GITHUB_SECRET": "too-short",
        "KILN_AMQP_URL": "amqp://guest:guest@127.0.0.1:1/",
    }
    result = subprocess.run(
        [sys.executable, "-m", "services.gateway", "--host", "127.0.0.1", "--port", "1"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "KILN_GITHUB_SECRET" in result.stderr
    assert "too-short" not in result.stderr and awkward_token not in result.stderr


def test_process_wide_redactor_knows_gateway_secrets_after_bootstrap(amqp_url, database_url):
    from services.gateway.bootstrap import bootstrap
    from tests.integration.test_gateway_webhooks import gateway_settings

    fresh = make_secrets()
    settings = gateway_settings(amqp_url, database_url).model_copy(update={"api_token": None})
    settings = settings.model_copy(update={"github_secret": type(settings.github_secret)(fresh["github"])})
    bootstrap(settings)
    assert fresh["github"] not in REDACT(f"leaked {fresh['github']}")
