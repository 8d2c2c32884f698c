"""Harbor extras on top of the Distribution API: projects, repositories, artifacts, garbage collection.

Harbor's REST API (v2.0) takes basic credentials on every call. Repository names inside a
project can contain slashes, and Harbor wants them URL-encoded twice in paths (`a/b` →
`a%252Fb`): once for the path segment, once more because its router decodes before matching.
The scan API (`scan_overview`, `start_scan`, `vulnerabilities`) returns Harbor's JSON as it
is: the scanner (services/scanner/adapters/harbor.py) polls it and parses the findings.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from shared.registry.client import RegistryClient

_API = "/api/v2.0"
_PAGE_SIZE = 100


def harbor_repository_segment(project: str, repository: str) -> str:
    """`proj/a/b` or `a/b` (in project `proj`) → `a%252Fb`."""
    name = repository.removeprefix(f"{project}/")
    return quote(quote(name, safe=""), safe="")


class HarborClient(RegistryClient):
    def _pages(self, path: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        page = 1
        while True:
            query = {**(params or {}), "page": page, "page_size": _PAGE_SIZE}
            batch = self.request("GET", f"{_API}{path}", params=query).json() or []
            items += batch
            if len(batch) < _PAGE_SIZE:
                return items
            page += 1

    def list_projects(self) -> list[str]:
        return [project["name"] for project in self._pages("/projects")]

    def list_project_repositories(self, project: str) -> list[str]:
        """Full repository names (`project/name`), as `docker pull` spells them."""
        return [repo["name"] for repo in self._pages(f"/projects/{quote(project, safe='')}/repositories")]

    def list_artifacts(
        self, project: str, repository: str, *, with_scan_overview: bool = False
    ) -> list[dict[str, Any]]:
        segment = harbor_repository_segment(project, repository)
        params = {"with_tag": "true", "with_scan_overview": str(with_scan_overview).lower()}
        return self._pages(f"/projects/{quote(project, safe='')}/repositories/{segment}/artifacts", params)

    # -- scanning (Harbor's own scanner, Trivy inside Harbor) ----------------------------------

    def _artifact_path(self, project: str, repository: str, digest: str) -> str:
        segment = harbor_repository_segment(project, repository)
        return f"{_API}/projects/{quote(project, safe='')}/repositories/{segment}/artifacts/{digest}"

    def scan_overview(self, project: str, repository: str, digest: str, mime_types: tuple[str, ...]) -> Any:
        """The artifact with its `scan_overview` (keyed by report MIME type)."""
        path = self._artifact_path(project, repository, digest)
        headers = {"X-Accept-Vulnerabilities": ", ".join(mime_types)}
        return self.request("GET", path, params={"with_scan_overview": "true"}, headers=headers).json()

    def start_scan(self, project: str, repository: str, digest: str) -> None:
        """Ask Harbor to scan the artifact; 409 (a scan is already running) is fine too."""
        self.request("POST", f"{self._artifact_path(project, repository, digest)}/scan", ok=(202, 409))

    def vulnerabilities(self, project: str, repository: str, digest: str, mime_types: tuple[str, ...]) -> Any:
        """The artifact's vulnerability report addition, keyed by report MIME type."""
        path = f"{self._artifact_path(project, repository, digest)}/additions/vulnerabilities"
        return self.request("GET", path, headers={"X-Accept-Vulnerabilities": ", ".join(mime_types)}).json()

    # -- maintenance ---------------------------------------------------------------------------

    def delete_repository(self, project: str, repository: str) -> None:
        segment = harbor_repository_segment(project, repository)
        self.request("DELETE", f"{_API}/projects/{quote(project, safe='')}/repositories/{segment}")

    def trigger_gc(self, *, delete_untagged: bool = False, dry_run: bool = False) -> int | None:
        """Start a manual garbage collection now; returns the GC job id when Harbor says it.

        delete_untagged is off by default: prune already deletes old builds by digest, and the
        images an index lists are untagged (docs/registry.md, garbage collection).
        """
        body = {
            "schedule": {"type": "Manual"},
            "parameters": {"delete_untagged": delete_untagged, "dry_run": dry_run},
        }
        response = self.request("POST", f"{_API}/system/gc/schedule", ok=(201,), json=body)
        location = response.headers.get("Location", "")
        tail = location.rstrip("/").rsplit("/", 1)[-1]
        return int(tail) if tail.isdigit() else None

    def gc_status(self, gc_id: int) -> str:
        """`Pending`, `Running`, `Success`, `Error`, `Stopped` (Harbor's job_status)."""
        return str(self.request("GET", f"{_API}/system/gc/{gc_id}").json().get("job_status", ""))
