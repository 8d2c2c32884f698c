"""HarborClient and the bearer token flow against a stub Harbor on 127.0.0.1.

No Harbor can run here, so a small HTTP server answers with the responses Harbor v2.0 documents
(swagger: projects, repositories, artifacts, system/gc; the registry token service of
/service/token). It checks what a real Harbor would: basic credentials on the API, a bearer
token with the right scope on /v2/, and repository names encoded twice in paths.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from shared.registry import HarborClient, RegistryAuthError

pytestmark = pytest.mark.integration

USER, PASSWORD = "robot$kiln", secrets.token_urlsafe(16)
TOKEN = secrets.token_urlsafe(24)
REPOSITORIES = [{"id": i, "name": f"kiln/app-{i}", "artifact_count": 1} for i in range(100)] + [
    {"id": 100, "name": "kiln/team/nested", "artifact_count": 2}
]
ARTIFACTS = [
    {
        "digest": "sha256:" + "1" * 64,
        "media_type": "application/vnd.oci.image.index.v1+json",
        "tags": [{"name": "latest"}, {"name": "b7"}],
        "scan_overview": {},
    }
]


class StubHarbor(BaseHTTPRequestHandler):
    seen: list[tuple[str, str]] = []
    token_scopes: list[list[str]] = []

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: object = None, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _basic_ok(self) -> bool:
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        return self.headers.get("Authorization") == expected

    def _unauthorized(self, challenge: str | None = None) -> None:
        headers = {"WWW-Authenticate": challenge} if challenge else {}
        self._send(401, {"errors": [{"code": "UNAUTHORIZED", "message": "unauthorized"}]}, headers)

    def _route(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        self.seen.append((self.command, url.path))
        if url.path == "/service/token":
            if not self._basic_ok():
                return self._unauthorized()
            self.token_scopes.append(query.get("scope", []))
            return self._send(200, {"token": TOKEN, "access_token": TOKEN, "expires_in": 1800})
        if url.path.startswith("/v2/"):
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                port = self.server.server_address[1]
                scope = ',scope="registry:catalog:*"' if url.path == "/v2/_catalog" else ""
                return self._unauthorized(
                    f'Bearer realm="http://127.0.0.1:{port}/service/token",service="harbor-registry"{scope}'
                )
            if url.path == "/v2/_catalog":
                return self._send(200, {"repositories": ["kiln/team/nested"]})
            return self._send(200, {})
        if not self._basic_ok():
            return self._unauthorized()
        page, size = int(query.get("page", ["1"])[0]), int(query.get("page_size", ["10"])[0])
        if url.path == "/api/v2.0/projects":
            return self._send(200, [{"project_id": 1, "name": "kiln"}][(page - 1) * size : page * size])
        if url.path == "/api/v2.0/projects/kiln/repositories":
            return self._send(200, REPOSITORIES[(page - 1) * size : page * size], {"X-Total-Count": "101"})
        if url.path == "/api/v2.0/projects/kiln/repositories/team%252Fnested/artifacts":
            assert query.get("with_scan_overview") == ["true"]
            return self._send(200, ARTIFACTS if page == 1 else [])
        if url.path == "/api/v2.0/system/gc/schedule" and self.command == "POST":
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            assert body["schedule"] == {"type": "Manual"}
            assert body["parameters"]["delete_untagged"] is False  # index children are untagged
            return self._send(201, None, {"Location": "/api/v2.0/system/gc/42"})
        if url.path == "/api/v2.0/system/gc/42":
            return self._send(200, {"id": 42, "job_name": "GARBAGE_COLLECTION", "job_status": "Success"})
        return self._send(404, {"errors": [{"code": "NOT_FOUND", "message": f"{url.path} not found"}]})

    do_GET = do_POST = do_DELETE = do_HEAD = _route


@pytest.fixture(scope="module")
def harbor_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), StubHarbor)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_projects_repositories_across_pages(harbor_url):
    with HarborClient(harbor_url, USER, PASSWORD) as harbor:
        assert harbor.list_projects() == ["kiln"]
        repositories = harbor.list_project_repositories("kiln")
    assert len(repositories) == 101 and repositories[-1] == "kiln/team/nested"


def test_artifacts_path_encodes_the_repository_twice(harbor_url):
    with HarborClient(harbor_url, USER, PASSWORD) as harbor:
        artifacts = harbor.list_artifacts("kiln", "kiln/team/nested", with_scan_overview=True)
    assert [tag["name"] for tag in artifacts[0]["tags"]] == ["latest", "b7"]
    assert ("GET", "/api/v2.0/projects/kiln/repositories/team%252Fnested/artifacts") in StubHarbor.seen


def test_gc_is_triggered_and_polled(harbor_url):
    with HarborClient(harbor_url, USER, PASSWORD) as harbor:
        assert harbor.trigger_gc() == 42
        assert harbor.gc_status(42) == "Success"


def test_bearer_token_flow_on_the_registry_api(harbor_url):
    with HarborClient(harbor_url, USER, PASSWORD) as harbor:
        assert harbor.list_repositories() == ["kiln/team/nested"]
        assert harbor.list_repositories() == ["kiln/team/nested"]  # cached token: no second token call
    assert StubHarbor.token_scopes.count(["registry:catalog:*"]) == 1


def test_wrong_password_is_an_auth_error_on_both_apis(harbor_url):
    with HarborClient(harbor_url, USER, "wrong-password") as harbor:
        with pytest.raises(RegistryAuthError):
            harbor.list_projects()
        with pytest.raises(RegistryAuthError):
            harbor.list_repositories()


def test_cli_gc_harbor_waits_for_the_job(harbor_url):
    env = {**os.environ, "KILN_REGISTRY_URL": harbor_url}
    env.update(KILN_REGISTRY_USERNAME=USER, KILN_REGISTRY_PASSWORD=PASSWORD)
    done = subprocess.run(
        [sys.executable, "-m", "shared.registry", "gc-harbor", "--wait"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "job 42: Success" in done.stdout
