"""Commit statuses on GitHub, Bitbucket Cloud and Bitbucket Server/Data Center (httpx).

- github: POST {api}/repos/{owner}/{repo}/statuses/{sha} (pending / success / failure)
- bitbucket-cloud: POST {api}/2.0/repositories/{ws}/{repo}/commit/{sha}/statuses/build
  (INPROGRESS / SUCCESSFUL / FAILED)
- bitbucket-server: POST {base}/rest/build-status/1.0/commits/{sha} (same states as Cloud)
"""

from __future__ import annotations

import logging
import time

import httpx
from pydantic import SecretStr

from services.reporter.ports import CommitStatus

log = logging.getLogger("kiln.reporter.status")

GITHUB_STATES = {"in_progress": "pending", "successful": "success", "failed": "failure"}
BITBUCKET_STATES = {"in_progress": "INPROGRESS", "successful": "SUCCESSFUL", "failed": "FAILED"}


class NoToken(Exception):
    """The provider has no token configured: nothing can be posted (not an error of the build)."""


class HttpCommitStatusPoster:
    def __init__(
        self,
        *,
        github_api_url: str,
        github_token: SecretStr | None,
        bitbucket_cloud_api_url: str,
        bitbucket_cloud_token: SecretStr | None,
        bitbucket_server_url: str | None,
        bitbucket_server_token: SecretStr | None,
        attempts: int = 3,
        timeout_s: float = 10.0,
    ):
        self._github = (github_api_url.rstrip("/"), github_token)
        self._cloud = (bitbucket_cloud_api_url.rstrip("/"), bitbucket_cloud_token)
        self._server = ((bitbucket_server_url or "").rstrip("/"), bitbucket_server_token)
        self.attempts = attempts
        self._timeout_s = timeout_s

    def post(self, status: CommitStatus) -> None:
        url, token, body = self._request(status)
        if token is None or not url.startswith("http"):
            raise NoToken(f"no {status.provider} token/URL configured")
        headers = {"Authorization": f"Bearer {token.get_secret_value()}", "Accept": "application/json"}
        for attempt in range(1, self.attempts + 1):
            try:
                response = httpx.post(url, json=body, headers=headers, timeout=self._timeout_s)
                if response.status_code < 500:
                    response.raise_for_status()  # 4xx: wrong token/repo, retrying cannot help
                    return
                error: Exception = httpx.HTTPStatusError(
                    f"{response.status_code}", request=response.request, response=response
                )
            except httpx.TransportError as exc:
                error = exc
            if attempt == self.attempts:
                raise error
            time.sleep(attempt)

    def _request(self, s: CommitStatus) -> tuple[str, SecretStr | None, dict]:
        if s.provider == "github":
            base, token = self._github
            body = {"state": GITHUB_STATES[s.state], "target_url": s.url,
                    "description": s.description[:140], "context": s.key}  # fmt: skip
            return f"{base}/repos/{s.repository}/statuses/{s.commit}", token, body
        body = {"state": BITBUCKET_STATES[s.state], "key": s.key, "name": s.name, "url": s.url,
                "description": s.description[:255]}  # fmt: skip
        if s.provider == "bitbucket-cloud":
            base, token = self._cloud
            return f"{base}/2.0/repositories/{s.repository}/commit/{s.commit}/statuses/build", token, body
        base, token = self._server
        return f"{base}/rest/build-status/1.0/commits/{s.commit}", token, body
