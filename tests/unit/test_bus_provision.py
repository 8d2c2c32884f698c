"""The provisioner's pure parts: password hashes, the definitions document, credentials files, URLs,
and the request the management-API backend sends (the rabbitmqctl backend runs for real in
tests/security/test_broker_permissions.py; no management plugin is enabled on the test broker)."""

from __future__ import annotations

import base64
import hashlib
import json

import httpx

from shared.bus import topology as t
from shared.bus.permissions import all_services
from shared.bus.provision import (
    ManagementApiAdmin,
    credentials_file,
    definitions,
    password_hash,
    read_password,
    service_url,
    vhost_of,
    with_vhost,
    write_credentials,
)


def test_password_hash_is_rabbitmq_sha256_salted():
    encoded = password_hash("s3cret", salt=b"\x01\x02\x03\x04")
    raw = base64.b64decode(encoded)
    assert raw[:4] == b"\x01\x02\x03\x04"
    assert raw[4:] == hashlib.sha256(b"\x01\x02\x03\x04" + b"s3cret").digest()
    assert password_hash("s3cret") != password_hash("s3cret")  # a fresh salt each time


def test_definitions_carry_hashes_and_every_grant_but_no_password():
    grants = [(f"kiln-{p.service}", f"pw-{p.service}-XYZ", p) for p in all_services()]
    document = definitions("kiln", grants)
    text = json.dumps(document)
    assert "pw-" not in text
    assert {u["name"] for u in document["users"]} == {f"kiln-{s.name}" for s in t.SERVICES}
    assert all(u["hashing_algorithm"] == "rabbit_password_hashing_sha256" for u in document["users"])
    assert len(document["permissions"]) == len(t.SERVICES)
    assert len(document["topic_permissions"]) == 4 * len(t.SERVICES)
    assert {p["vhost"] for p in document["permissions"] + document["topic_permissions"]} == {"kiln"}


def test_management_api_backend_posts_the_definitions_with_basic_auth():
    seen = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    admin = ManagementApiAdmin("http://admin:p%40ss@rabbit:15672", transport=httpx.MockTransport(answer))
    admin.load({"users": []})
    (request,) = seen
    assert request.method == "POST" and str(request.url) == "http://rabbit:15672/api/definitions"
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"admin:p@ss").decode()
    assert json.loads(request.content) == {"users": []}


def test_credentials_file_is_private_and_round_trips(tmp_path):
    url = service_url("amqp://admin:x@rabbit:5672/", "kiln/prod", "kiln-gateway", "p@ss:/w?rd", None)
    assert url == "amqp://kiln-gateway:p%40ss%3A%2Fw%3Frd@rabbit:5672/kiln%2Fprod"
    path = credentials_file(tmp_path / "users", "gateway")
    write_credentials(path, url)
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_password(path) == "p@ss:/w?rd"
    assert read_password(tmp_path / "missing.env") is None


def test_vhost_helpers():
    assert vhost_of("amqp://a:b@h:5672/") == "/"
    assert vhost_of("amqp://a:b@h/kiln%2Fx") == "kiln/x"
    assert vhost_of(with_vhost("amqp://a:b@h:5672/", "other")) == "other"
    assert service_url("amqp://a:b@h:5672/", "v", "u", "p", "rabbitmq:5671").startswith(
        "amqp://u:p@rabbitmq:5671/"
    )
