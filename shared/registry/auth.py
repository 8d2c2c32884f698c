"""Registry authentication as an httpx.Auth: HTTP basic, and the bearer token flow.

Flow (Docker Registry token spec, used by Harbor, Docker Hub, GitLab, Quay): send the request;
on 401 read `WWW-Authenticate`. `Basic` → resend with the credentials and send them up front
from then on. `Bearer realm=..,service=..,scope=..` → GET the realm with service and every
scope (basic credentials when we have them, anonymous otherwise), take `token` or
`access_token`, resend. Tokens are cached by scope; the scope of a later request is guessed from
its path so a warm client sends the right token without a 401 first.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Generator, Iterable

import httpx

from shared.logging import REDACT
from shared.registry.transport import plain_http_allowed

_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')
_REPOSITORY_PATH = re.compile(r"^/v2/(?P<name>.+)/(?:manifests|blobs|tags)/")


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="r",service="s"` → ("bearer", {"realm": "r", "service": "s"})."""
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), dict(_CHALLENGE_PARAM.findall(rest))


def guess_scope(request: httpx.Request) -> str | None:
    """The token scope a request needs; mounts add `pull` on the source repository."""
    match = _REPOSITORY_PATH.match(request.url.path)
    if match is None:
        return "registry:catalog:*" if request.url.path == "/v2/_catalog" else None
    actions = "pull" if request.method in ("GET", "HEAD") else "pull,push"
    if request.method == "DELETE" and "/manifests/" in request.url.path:
        actions = "delete"
    scope = f"repository:{match['name']}:{actions}"
    source = request.url.params.get("from")
    return f"{scope} repository:{source}:pull" if source else scope


class RegistryChallengeAuth(httpx.Auth):
    """httpx auth flow answering a registry's 401 challenge (Basic, or a Bearer token per scope).
    Not the imager's `services.imager.ports.RegistryAuth`, which only carries a username and
    password to the image builder."""

    requires_response_body = True  # the token endpoint's JSON body
    requires_request_body = True  # a request is replayed after the challenge

    def __init__(self, username: str | None, password: str | None, *, insecure_hosts: Iterable[str] = ()):
        self._username = username
        self._password = password
        self._insecure_hosts = frozenset(insecure_hosts)
        if password:
            REDACT.add(password)
        self._basic_known = False
        self._tokens: dict[str, str] = {}

    def _basic_header(self) -> str | None:
        if self._username is None or self._password is None:
            return None
        raw = f"{self._username}:{self._password}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def _authorize(self, request: httpx.Request) -> None:
        scope = guess_scope(request)
        if scope is not None and scope in self._tokens:
            request.headers["Authorization"] = f"Bearer {self._tokens[scope]}"
        # Harbor's REST API (/api/) answers 401 without a challenge: send basic up front there.
        elif (self._basic_known or request.url.path.startswith("/api/")) and (header := self._basic_header()):
            request.headers["Authorization"] = header

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self._authorize(request)
        response = yield request
        if response.status_code != 401:
            return
        scheme, params = parse_challenge(response.headers.get("WWW-Authenticate", ""))
        if scheme == "basic":
            header = self._basic_header()
            if header is None:
                return  # no credentials to offer: the caller sees the 401
            self._basic_known = True
            request.headers["Authorization"] = header
            yield request
        elif scheme == "bearer" and "realm" in params:
            token_response = yield self._token_request(params)
            if token_response.status_code != 200:
                return  # the 401 from the token service stands: wrong credentials
            body = token_response.json()
            token = body.get("token") or body.get("access_token")
            if not token:
                return
            REDACT.add(token)
            scope = params.get("scope", "")
            self._tokens[scope] = token
            if (guessed := guess_scope(request)) is not None:
                self._tokens[guessed] = token
            request.headers["Authorization"] = f"Bearer {token}"
            yield request

    def _token_request(self, params: dict[str, str]) -> httpx.Request:
        query: list[tuple[str, str]] = []
        if "service" in params:
            query.append(("service", params["service"]))
        query += [("scope", scope) for scope in params.get("scope", "").split() if scope]
        request = httpx.Request("GET", params["realm"], params=query)
        # The realm is named by the registry's answer: Basic credentials go to it only over TLS
        # (or loopback / an operator-listed host), never to a plain-HTTP realm elsewhere.
        secure = request.url.scheme == "https" or plain_http_allowed(
            request.url.netloc.decode(), self._insecure_hosts
        )
        if secure and (header := self._basic_header()):
            request.headers["Authorization"] = header
        return request
