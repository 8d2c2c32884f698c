"""The Harbor client against a stub HTTP server on 127.0.0.1 that answers like Harbor's v2.0 API:
scan overview keyed by report MIME type, scan trigger (202), polling, the vulnerability report,
doubly URL-encoded repository names, basic auth, and the ways it fails."""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from services.scanner.adapters.harbor import HarborScanner, harbor_repository
from services.scanner.report import MalformedReport, ScanError, ScannerCrashed

pytestmark = pytest.mark.integration

MIME = "application/vnd.security.vulnerability.report; version=1.1"
DIGEST = "sha256:" + "c" * 64
PROJECT = "kiln"
REPOSITORY = "tenants/acme/axion-webhook-demo"
ENCODED = "tenants%252Facme%252Faxion-webhook-demo"
ARTIFACT_PATH = f"/api/v2.0/projects/{PROJECT}/repositories/{ENCODED}/artifacts/{DIGEST}"
CREDENTIALS = ("robot$kiln", "generated-in-test")


def overview(status: str) -> dict:
    return {
        MIME: {
            "report_id": "5e0b6bd0-5b53-4a02-a4c9-3d8f0a4f3b0e",
            "scan_status": status,
            "severity": "High",
            "duration": 9,
            "summary": {"total": 2, "fixable": 1, "summary": {"High": 1, "Low": 1}},
            "start_time": "2026-11-21T10:00:00.000Z",
            "end_time": "2026-11-21T10:00:09.000Z",
            "complete_percent": 100 if status == "Success" else 40,
            "scanner": {"name": "Trivy", "vendor": "Aqua Security", "version": "v0.50.1"},
        }
    }


def artifact(scan_overview: dict | None) -> dict:
    body = {
        "id": 12,
        "project_id": 2,
        "repository_id": 5,
        "digest": DIGEST,
        "type": "IMAGE",
        "media_type": "application/vnd.oci.image.config.v1+json",
        "manifest_media_type": "application/vnd.docker.distribution.manifest.v2+json",
        "size": 30123456,
        "push_time": "2026-11-21T09:59:00.000Z",
        "tags": [{"id": 7, "name": "b7", "immutable": False}],
        "addition_links": {
            "vulnerabilities": {"absolute": False, "href": f"{ARTIFACT_PATH}/additions/vulnerabilities"}
        },
    }
    if scan_overview is not None:
        body["scan_overview"] = scan_overview
    return body


VULNERABILITIES = {
    MIME: {
        "generated_at": "2026-11-21T10:00:09.000Z",
        "scanner": {"name": "Trivy", "vendor": "Aqua Security", "version": "v0.50.1"},
        "severity": "High",
        "vulnerabilities": [
            {
                "id": "CVE-2023-4911",
                "package": "libc6",
                "version": "2.36-9+deb12u3",
                "fix_version": "2.36-9+deb12u4",
                "severity": "High",
                "description": "glibc: buffer overflow in ld.so leading to privilege escalation",
                "links": ["https://avd.aquasec.com/nvd/cve-2023-4911"],
                "artifact_digests": [DIGEST],
                "cwe_ids": ["CWE-787"],
            },
            {
                "id": "CVE-2011-3374",
                "package": "apt",
                "version": "2.6.1",
                "fix_version": "",
                "severity": "Negligible",
                "description": "apt does not validate the keyring",
                "links": [],
                "artifact_digests": [DIGEST],
            },
        ],
    }
}


@dataclass
class HarborStub:
    """Scripted answers: `statuses` are the scan_status values returned by successive overviews."""

    statuses: list = field(default_factory=lambda: ["Success"])
    fail_first: int = 0
    vulnerabilities: dict = field(default_factory=lambda: VULNERABILITIES)
    requests: list = field(default_factory=list)

    def answer(self, method: str, path: str, auth: str) -> tuple[int, object]:
        self.requests.append((method, path))
        expected = "Basic " + base64.b64encode(":".join(CREDENTIALS).encode()).decode()
        if auth != expected:
            return 401, {"errors": [{"code": "UNAUTHORIZED", "message": "unauthorized"}]}
        if self.fail_first > 0:
            self.fail_first -= 1
            return 503, {"errors": [{"code": "UNKNOWN", "message": "service unavailable"}]}
        if not path.startswith(ARTIFACT_PATH):
            return 404, {"errors": [{"code": "NOT_FOUND", "message": f"artifact {path} not found"}]}
        rest = path[len(ARTIFACT_PATH) :]
        if method == "POST" and rest == "/scan":
            self.statuses = [s for s in self.statuses if s is not None] or ["Success"]
            return 202, None
        if method == "GET" and rest == "?with_scan_overview=true":
            status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
            return 200, artifact(None if status is None else overview(status))
        if method == "GET" and rest == "/additions/vulnerabilities":
            return 200, self.vulnerabilities
        return 404, {"errors": [{"code": "NOT_FOUND", "message": "no route"}]}


@pytest.fixture
def harbor():
    stub = HarborStub()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self):
            status, body = stub.answer(self.command, self.path, self.headers.get("Authorization", ""))
            payload = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _serve

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield stub
    server.shutdown()
    server.server_close()


def client(stub, **kw) -> HarborScanner:
    kw.setdefault("credentials", CREDENTIALS)
    return HarborScanner(stub.url, poll_timeout_s=kw.pop("poll_timeout_s", 5), poll_interval_s=0.01, **kw)


def test_repository_is_taken_relative_to_the_project():
    assert harbor_repository(f"harbor.example.com/kiln/{REPOSITORY}", "kiln") == REPOSITORY
    with pytest.raises(ScanError, match="not in Harbor project"):
        harbor_repository("harbor.example.com/other/app", "kiln")


def test_existing_scan_is_read_without_triggering_a_new_one(harbor):
    report = client(harbor).vulnerability_report(PROJECT, REPOSITORY, DIGEST)
    assert report.scanner == "harbor"
    assert [(f.id, f.package, f.installed, f.fixed, f.severity) for f in report.vulnerabilities] == [
        ("CVE-2023-4911", "libc6", "2.36-9+deb12u3", "2.36-9+deb12u4", "HIGH"),
        ("CVE-2011-3374", "apt", "2.6.1", "", "LOW"),
    ]
    assert report.counts()["HIGH"] == 1
    assert ("POST", f"{ARTIFACT_PATH}/scan") not in harbor.requests
    # the repository name with '/' travels doubly URL-encoded
    assert all(ENCODED in path for _, path in harbor.requests)


def test_unscanned_artifact_gets_a_scan_then_is_polled_until_success(harbor):
    harbor.statuses = [None, "Pending", "Running", "Running", "Success"]
    report = client(harbor).vulnerability_report(PROJECT, REPOSITORY, DIGEST)
    assert len(report.vulnerabilities) == 2
    methods = [m for m, _ in harbor.requests]
    assert methods.count("POST") == 1
    assert methods.count("GET") >= 4


def test_scan_that_never_finishes_times_out_with_a_clear_reason(harbor):
    harbor.statuses = ["Running"]
    with pytest.raises(ScannerCrashed, match=r"did not finish .* within 0s \(last status: Running\)"):
        client(harbor, poll_timeout_s=0.2).vulnerability_report(PROJECT, REPOSITORY, DIGEST)


def test_scan_ending_in_error_fails(harbor):
    harbor.statuses = ["Running", "Error"]
    with pytest.raises(ScannerCrashed, match="ended with status Error"):
        client(harbor).vulnerability_report(PROJECT, REPOSITORY, DIGEST)


def test_server_errors_are_retried_a_bounded_number_of_times(harbor):
    harbor.fail_first = 2
    assert len(client(harbor).vulnerability_report(PROJECT, REPOSITORY, DIGEST).vulnerabilities) == 2
    harbor.fail_first = 10
    with pytest.raises(ScannerCrashed, match="unreachable after 3 attempts: HTTP 503"):
        client(harbor).vulnerability_report(PROJECT, REPOSITORY, DIGEST)


def test_wrong_credentials_fail_at_once(harbor):
    with pytest.raises(ScanError, match="answered 401"):
        client(harbor, credentials=("robot$kiln", "wrong")).vulnerability_report(PROJECT, REPOSITORY, DIGEST)
    assert len(harbor.requests) == 1


def test_unreachable_harbor_is_a_crash_not_a_pass():
    dead = HarborScanner("http://127.0.0.1:9", credentials=CREDENTIALS, poll_interval_s=0.01)
    with pytest.raises(ScannerCrashed, match="unreachable"):
        dead.vulnerability_report(PROJECT, REPOSITORY, DIGEST)


def test_unreadable_vulnerability_report_is_malformed(harbor):
    harbor.vulnerabilities = {"application/unknown": {}}
    with pytest.raises(MalformedReport):
        client(harbor).vulnerability_report(PROJECT, REPOSITORY, DIGEST)
