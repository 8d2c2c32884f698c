"""Webhook semantics with a recording publisher: signatures, refs, deletions, tags, redelivery."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.unit.test_gateway_fakes import RecordingPublisher, fake_app, make_secrets
from tests.unit.test_gateway_payloads import (
    ZERO,
    cloud_change,
    cloud_push,
    commit_hash,
    delivery,
    gateway_config,
    github_ping,
    github_push,
    server_change,
    server_ping,
    server_push,
)

SECRETS = make_secrets()
CONFIG = gateway_config()


@pytest.fixture
def publisher():
    return RecordingPublisher()


@pytest.fixture
def client(publisher):
    with TestClient(fake_app(CONFIG, SECRETS, publisher)) as client:
        yield client


def post(client, provider, event, payload, *, secret="ok", delivery_id=None):
    key = SECRETS[provider.replace("-", "_")] if secret == "ok" else secret
    body, headers = delivery(provider, event, payload, key, delivery_id)
    return client.post(f"/webhook/{provider}", content=body, headers=headers)


def test_cloud_push_with_two_branches_starts_two_builds(client, publisher):
    a, b = commit_hash(), commit_hash()
    payload = cloud_push(cloud_change("main", a, old=commit_hash()), cloud_change("develop", b))
    reply = post(client, "bitbucket-cloud", "repo:push", payload)
    assert reply.status_code == 202, reply.text
    assert reply.json()["status"] == "accepted" and len(reply.json()["build_ids"]) == 2
    events = [e.event() for e in publisher.published]
    assert [(e.source.ref, e.source.commit, e.version) for e in events] == [
        ("refs/heads/main", a, "axion"),
        ("refs/heads/develop", b, "meridian"),
    ]
    assert events[0].source.repo_url == "https://bitbucket.org/example/monorepo.git"
    assert events[0].trigger.kind == "bitbucket-cloud" and events[0].trigger.actor == "dev"
    assert events[0].build_number == 1 and events[1].build_number == 2


def test_cloud_deleted_branch_starts_nothing(client, publisher):
    reply = post(client, "bitbucket-cloud", "repo:push", cloud_push(cloud_change("main", None)))
    assert reply.status_code == 200 and "deleted" in reply.json()["reason"]
    assert publisher.published == []


def test_tags_build_only_where_config_says(client, publisher):
    sha = commit_hash()
    reply = post(client, "bitbucket-cloud", "repo:push", cloud_push(cloud_change("v1.0", sha, kind="tag")))
    assert reply.status_code == 202
    assert [e.package for e in publisher.published] == ["demo-tags"]
    assert publisher.published[0].event().source.ref == "refs/tags/v1.0"


@pytest.mark.parametrize("secret", [None, "wrong-secret-value"])
@pytest.mark.parametrize(
    ("provider", "event", "payload"),
    [
        ("bitbucket-cloud", "repo:push", cloud_push(cloud_change("main", "a" * 40))),
        ("bitbucket-server", "repo:refs_changed", server_push(server_change("refs/heads/main", "a" * 40))),
        ("github", "push", github_push("refs/heads/main", "a" * 40)),
    ],
)
def test_missing_or_wrong_signature_is_401(client, publisher, provider, event, payload, secret):
    reply = post(client, provider, event, payload, secret=secret)
    assert reply.status_code == 401
    assert publisher.published == []


def test_signature_of_another_body_is_401(client, publisher):
    body, headers = delivery("github", "push", github_push("refs/heads/main", "a" * 40), SECRETS["github"])
    reply = client.post("/webhook/github", content=body + b" ", headers=headers)
    assert reply.status_code == 401 and publisher.published == []


def test_server_refs_changed_update_add_delete(client, publisher):
    sha = commit_hash()
    payload = server_push(
        server_change("refs/heads/main", sha),
        server_change("refs/heads/feature/x", commit_hash(), change_type="ADD"),
        server_change("refs/heads/old", ZERO, change_type="DELETE"),
    )
    reply = post(client, "bitbucket-server", "repo:refs_changed", payload, delivery_id="req-1")
    assert reply.status_code == 202, reply.text
    assert len(reply.json()["build_ids"]) == 2
    first = publisher.published[0].event()
    assert first.package == "demo-server" and first.source.commit == sha
    assert first.source.repo_url == "https://bitbucket.example.com/scm/proj/monorepo.git"


def test_pings_answer_2xx_and_start_nothing(client, publisher):
    assert post(client, "github", "ping", github_ping()).status_code == 200
    assert post(client, "bitbucket-server", "diagnostics:ping", server_ping()).status_code == 200
    assert publisher.published == []


def test_github_push_and_deletion(client, publisher):
    sha = commit_hash()
    assert post(client, "github", "push", github_push("refs/heads/develop", sha)).status_code == 202
    assert publisher.published[0].event().source.commit == sha
    assert publisher.published[0].event().source.repo_url == "https://github.com/example/monorepo.git"
    reply = post(client, "github", "push", github_push("refs/heads/develop", None))
    assert reply.status_code == 200 and len(publisher.published) == 1


def test_redelivery_by_id_and_by_ref_starts_no_second_build(client, publisher):
    payload = github_push("refs/heads/main", commit_hash())
    assert post(client, "github", "push", payload, delivery_id="d-1").status_code == 202
    again = post(client, "github", "push", payload, delivery_id="d-1")
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    same_ref = post(client, "github", "push", payload, delivery_id="d-2")
    assert same_ref.status_code == 200
    assert len(publisher.published) == 1


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b"{not json", {"X-GitHub-Event": "push"}, 400),
        (b"[]", {"X-GitHub-Event": "push"}, 400),
        (b'{"ref": "refs/heads/main"}', {"X-GitHub-Event": "push"}, 400),
        (b"{}", {}, 400),
        (b"{}", {"X-GitHub-Event": "issues"}, 200),
    ],
)
def test_malformed_input_is_4xx_never_5xx(publisher, body, headers, status):
    with TestClient(fake_app(CONFIG, None, publisher)) as unsigned:
        assert unsigned.post("/webhook/github", content=body, headers=headers).status_code == status
    assert publisher.published == []


def test_bad_branch_name_and_bad_hash_start_nothing(publisher):
    with TestClient(fake_app(CONFIG, None, publisher)) as unsigned:
        for ref, sha in (("refs/heads/feature/../x", "a" * 40), ("refs/heads/main", "$(rm -rf /)")):
            body, headers = delivery("github", "push", github_push(ref, sha), None)
            assert unsigned.post("/webhook/github", content=body, headers=headers).status_code == 200
    assert publisher.published == []


def test_oversized_body_is_413(client, publisher):
    body = b"{" + b" " * (256 * 1024) + b"}"
    reply = client.post("/webhook/bitbucket-cloud", content=body, headers={"X-Event-Key": "repo:push"})
    assert reply.status_code == 413 and publisher.published == []


def test_broker_down_is_503_and_retry_succeeds():
    failing = RecordingPublisher(fail=True)
    app = fake_app(CONFIG, SECRETS, failing)
    payload = github_push("refs/heads/main", commit_hash())
    with TestClient(app) as client:
        assert post(client, "github", "push", payload, delivery_id="d-9").status_code == 503
        failing.fail = False
        assert post(client, "github", "push", payload, delivery_id="d-9").status_code == 202
    assert len(failing.published) == 1


def test_unknown_repository_starts_nothing(client, publisher):
    reply = post(client, "github", "push", github_push("refs/heads/main", commit_hash(), full_name="x/y"))
    assert reply.status_code == 200 and "not configured" in reply.json()["reason"]
