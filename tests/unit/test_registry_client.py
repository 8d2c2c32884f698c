"""RegistryClient logic on httpx.MockTransport: auth flows, error classes, digest checks, prune choice."""

from __future__ import annotations

import json

import httpx
import pytest

from shared.registry import (
    DigestMismatch,
    NotFound,
    RegistryAuthError,
    RegistryClient,
    RegistryError,
    RegistryUnavailable,
    harbor_repository_segment,
    registry_base_url,
)
from shared.registry import manifests as mf
from shared.registry.auth import guess_scope, parse_challenge
from shared.registry.prune import build_number, select_kept_tags


def client_on(handler, username="u", password="p4ssw0rd") -> RegistryClient:
    return RegistryClient("registry.test", username, password, transport=httpx.MockTransport(handler))


def test_base_url_defaults_to_http_only_for_loopback():
    assert registry_base_url("127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert registry_base_url("127.8.0.3:5000") == "http://127.8.0.3:5000"
    assert registry_base_url("[::1]:5000") == "http://[::1]:5000"
    assert registry_base_url("localhost:5000") == "http://localhost:5000"
    assert registry_base_url("harbor.example.com") == "https://harbor.example.com"
    assert registry_base_url("127.example.com") == "https://127.example.com"  # a name, not 127/8
    # only a host the operator listed (KILN_REGISTRY_INSECURE_HOSTS) gets plain http
    assert registry_base_url("registry:5000", {"registry:5000"}) == "http://registry:5000"
    assert registry_base_url("https://h.example/", {"h.example"}) == "https://h.example"


def test_challenge_and_scope_parsing():
    scheme, params = parse_challenge('Bearer realm="https://a/token",service="reg",scope="repository:x:pull"')
    assert scheme == "bearer" and params == {
        "realm": "https://a/token",
        "service": "reg",
        "scope": "repository:x:pull",
    }
    mount = httpx.Request("POST", "https://r/v2/p/a/blobs/uploads/?mount=sha256:1&from=p/b")
    assert guess_scope(mount) == "repository:p/a:pull,push repository:p/b:pull"
    assert (
        guess_scope(httpx.Request("DELETE", "https://r/v2/p/a/manifests/sha256:1")) == "repository:p/a:delete"
    )


def test_bearer_flow_sends_every_scope_and_reuses_the_token():
    token_calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            token_calls.append(request.url.params.get_list("scope"))
            assert request.headers["Authorization"].startswith("Basic ")
            return httpx.Response(200, json={"access_token": "tok-123456789"})
        if request.headers.get("Authorization") != "Bearer tok-123456789":
            scopes = "repository:a:pull repository:b:pull"
            challenge = f'Bearer realm="https://auth.test/token",service="reg",scope="{scopes}"'
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})
        return httpx.Response(200, json={"tags": ["b1"]})

    client = client_on(handler)
    assert client.list_tags("a") == ["b1"]
    assert client.list_tags("a") == ["b1"]
    assert token_calls == [["repository:a:pull", "repository:b:pull"]]


def test_basic_challenge_then_sent_up_front():
    unauthenticated = []

    def handler(request: httpx.Request) -> httpx.Response:
        if "Authorization" not in request.headers:
            unauthenticated.append(request.url.path)
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'})
        return httpx.Response(200, json={"repositories": ["x"]})

    client = client_on(handler)
    assert client.list_repositories() == ["x"]
    assert client.list_repositories() == ["x"]
    assert unauthenticated == ["/v2/_catalog"]


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, RegistryAuthError),
        (403, RegistryAuthError),
        (404, NotFound),
        (429, RegistryUnavailable),
        (503, RegistryUnavailable),
        (400, RegistryError),
    ],
)
def test_status_classification(status, error):
    client = client_on(
        lambda request: httpx.Response(status, json={"errors": [{"code": "X", "message": "m"}]})
    )
    with pytest.raises(error) as caught:
        client.list_tags("a")
    assert caught.value.status == status and caught.value.codes == ("X",)


def test_connection_errors_are_transient_and_the_password_is_not_in_the_message():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(RegistryUnavailable) as caught:
        client_on(handler).ping()
    assert "p4ssw0rd" not in str(caught.value)


def test_delete_disabled_says_how_to_enable_it():
    client = client_on(lambda request: httpx.Response(405, json={"errors": [{"code": "UNSUPPORTED"}]}))
    with pytest.raises(RegistryError, match=r"storage\.delete\.enabled"):
        client.delete_manifest("a", "sha256:" + "0" * 64)


def test_tampered_manifest_and_blob_are_refused():
    manifest = b'{"schemaVersion":2}'

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"tampered", headers={"Content-Type": mf.OCI_MANIFEST})

    client = client_on(handler)
    with pytest.raises(DigestMismatch):
        client.get_manifest("a", mf.sha256_digest(manifest))
    with pytest.raises(DigestMismatch):
        client.get_blob("a", mf.sha256_digest(b"original"))


def test_catalog_follows_link_pages():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("last") == "a":
            return httpx.Response(200, json={"repositories": ["b"]})
        return httpx.Response(
            200, json={"repositories": ["a"]}, headers={"Link": '</v2/_catalog?last=a&n=1>; rel="next"'}
        )

    assert client_on(handler).list_repositories() == ["a", "b"]


def test_index_document():
    index = json.loads(mf.image_index([("linux/arm64/v8", mf.DOCKER_MANIFEST, "sha256:1", 5)]))
    assert index["mediaType"] == mf.OCI_INDEX
    assert index["manifests"][0]["platform"] == {"os": "linux", "architecture": "arm64", "variant": "v8"}
    with pytest.raises(ValueError):
        mf.parse_platform("arm64")


def test_prune_keeps_newest_builds_by_number_and_every_other_tag():
    tags = ["b9", "b10", "latest", "b2", "bookworm", "b011", "b1"]
    assert select_kept_tags(tags, 2) == ["b10", "b9", "b011", "bookworm", "latest"]
    assert build_number("b011") is None  # not a build_tag(): never pruned
    assert select_kept_tags(tags, 0) == ["b011", "bookworm", "latest"]


def test_harbor_repository_names_are_encoded_twice():
    assert harbor_repository_segment("kiln", "kiln/a/b") == "a%252Fb"
    assert harbor_repository_segment("kiln", "app") == "app"
