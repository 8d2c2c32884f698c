"""Where a package's code comes from: derived from operator config only, never from a request.

One function decides a package's source (its clone URL and the one git transport it may use),
so the gateway (what it puts in build.requested), the compiler and the deployer (what they are
willing to fetch when build.requested arrives) apply the same rule:

* `packages.<p>.webhooks.clone_url` if set, else `webhooks.repository` under the base URL of
  its provider (KILN_GITHUB_URL, KILN_BITBUCKET_CLOUD_URL, KILN_BITBUCKET_SERVER_URL);
* https and ssh always; plain http/git:// only with `webhooks.allow_http`, file:// and local
  paths only with `webhooks.allow_file` (both operator config);
* the git token (KILN_GIT_TOKEN) only over https, only to the hosts in KILN_GIT_TOKEN_HOSTS
  (default: the hosts of the provider base URLs above).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import field_validator

from shared.config import ConfigError, KilnConfig, PackageConfig, load_config
from shared.logging import REDACT
from shared.settings import KilnSettings

Provider = Literal["github", "bitbucket-cloud", "bitbucket-server"]
PROVIDERS: tuple[Provider, ...] = ("github", "bitbucket-cloud", "bitbucket-server")
_PROVIDER_SETTING = {
    "github": "KILN_GITHUB_URL",
    "bitbucket-cloud": "KILN_BITBUCKET_CLOUD_URL",
    "bitbucket-server": "KILN_BITBUCKET_SERVER_URL",
}
_BASE_URL = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?$")
_REMOTE_HELPER = re.compile(r"^[A-Za-z0-9+.-]+::")
_SCP_LIKE = re.compile(r"^(?:[A-Za-z0-9._-]+@)?(?P<host>[A-Za-z0-9.-]+):(?!//)")


class SourceRefused(ValueError):
    """The source is not one the operator configured (or not allowed): the message says which key
    or setting decides it."""


class SourceSettings(KilnSettings):
    """The operator's provider base URLs and the hosts that get the git token (every service
    that derives or fetches a source: gateway, compiler, deployer)."""

    github_url: str = "https://github.com"
    bitbucket_cloud_url: str = "https://bitbucket.org"
    # Bitbucket Server / Data Center has no public default: unset, its packages need clone_url.
    bitbucket_server_url: str | None = None
    # Comma-separated host or host:port that receive KILN_GIT_TOKEN (over https only). Unset: the
    # hosts of the three URLs above; empty: no host (anonymous fetches only).
    git_token_hosts: str | None = None

    @field_validator("github_url", "bitbucket_cloud_url", "bitbucket_server_url")
    @classmethod
    def _plain_base_url(cls, value: str | None) -> str | None:
        if value is not None and not _BASE_URL.match(value):
            raise ValueError("must be http(s)://host[:port][/path], without credentials, query or spaces")
        return value.rstrip("/") if value else value

    def provider_urls(self) -> dict[str, str]:
        urls = {"github": self.github_url, "bitbucket-cloud": self.bitbucket_cloud_url}
        return urls | ({"bitbucket-server": self.bitbucket_server_url} if self.bitbucket_server_url else {})

    def token_hosts(self) -> frozenset[str]:
        if self.git_token_hosts is None:
            return frozenset(netloc(url) for url in self.provider_urls().values())
        return frozenset(h.strip().lower() for h in self.git_token_hosts.split(",") if h.strip())


@dataclass(frozen=True)
class PackageSource:
    package: str
    url: str
    transport: str  # https, ssh, http, git or file: the only protocol git may use for it
    host: str  # host[:port], lower case; empty for file


def netloc(url: str) -> str:
    """host[:port] of a URL, lower case, without user info."""
    return (urlsplit(url).netloc.rpartition("@")[2]).lower()


def transport_of(url: str) -> tuple[str, str]:
    """(transport, host[:port]) of a git URL: the names GIT_ALLOW_PROTOCOL uses."""
    if _REMOTE_HELPER.match(url):  # git's `<helper>::<address>`: ext:: and fd:: run commands
        raise SourceRefused(f"{REDACT(url)!r}: remote-helper URLs (<helper>::...) are not sources")
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if scheme in ("https", "http", "ssh", "git"):
        return scheme, netloc(url)
    if scheme == "git+ssh" or scheme == "ssh+git":
        return "ssh", netloc(url)
    if scheme == "file":
        return "file", ""
    if scheme:
        raise SourceRefused(f"{REDACT(url)!r}: transport {scheme}:// is not supported (https, ssh)")
    scp = _SCP_LIKE.match(url)
    return ("ssh", scp.group("host").lower()) if scp else ("file", "")


def provider_url(provider: str, repository: str, urls: dict[str, str]) -> str:
    base = urls.get(provider)
    if base is None:
        raise SourceRefused(f"no base URL for {provider}: set {_PROVIDER_SETTING[provider]}")
    if provider == "bitbucket-server":
        project, _, slug = repository.partition("/")
        return f"{base}/scm/{project.lower()}/{slug}.git"
    return f"{base}/{repository}.git"


def configured_source(
    config: KilnConfig, package: str, urls: dict[str, str], *, provider: str | None = None
) -> PackageSource:
    """The package's source when `provider` delivered the push (None: an API/CLI build)."""
    hooks = _package(config, package).webhooks
    where = f"packages.{package}.webhooks"
    if hooks.clone_url:
        url = hooks.clone_url
    else:
        chosen = hooks.provider or provider
        if not hooks.repository or chosen is None:
            raise SourceRefused(
                f"{where}: package {package!r} has no configured source; set clone_url, or repository "
                "and provider, in the operator config"
            )
        url = provider_url(chosen, hooks.repository, urls)
    return _allowed(config.packages[package], package, url)


def source_candidates(config: KilnConfig, package: str, urls: dict[str, str]) -> list[PackageSource]:
    """Every source a build of `package` may come from (more than one only when the package sets
    no provider: each provider route with a base URL builds it from that provider)."""
    hooks = _package(config, package).webhooks
    if hooks.clone_url or hooks.provider:
        return [configured_source(config, package, urls)]
    if not hooks.repository:
        return []
    return [configured_source(config, package, urls, provider=p) for p in PROVIDERS if p in urls]


def _package(config: KilnConfig, package: str) -> PackageConfig:
    if package not in config.packages:
        known = ", ".join(sorted(config.packages))
        raise SourceRefused(f"no package {package!r} in the operator config (known: {known})")
    return config.packages[package]


def _allowed(pkg: PackageConfig, package: str, url: str) -> PackageSource:
    transport, host = transport_of(url)
    key = f"packages.{package}.webhooks"
    if transport in ("http", "git") and not pkg.webhooks.allow_http:
        raise SourceRefused(
            f"{REDACT(url)!r} is plain {transport}:// (unencrypted, unauthenticated): use https or ssh, "
            f"or set {key}.allow_http: true in the operator config"
        )
    if transport == "file" and not pkg.webhooks.allow_file:
        raise SourceRefused(
            f"{REDACT(url)!r} is a path on the fetching host: set {key}.allow_file: true in the "
            "operator config to build from it"
        )
    return PackageSource(package=package, url=url, transport=transport, host=host)


def sends_token(source: PackageSource, token_hosts: Iterable[str]) -> bool:
    """The token goes over https only, and only to a listed host (host, or host:port exactly)."""
    if source.transport != "https":
        return False
    hosts = set(token_hosts)
    return source.host in hosts or source.host.partition(":")[0] in hosts


class SourceGuard:
    """What a receiver of build.requested may fetch: a configured source of that package, nothing
    else (a forged event on the bus names an attacker's URL in vain). `load_config` is called per
    fetch, so an operator's config change applies to the next build."""

    def __init__(self, settings: SourceSettings, load_config: Callable[[], KilnConfig | None]):
        self._urls = settings.provider_urls()
        self._load_config = load_config

    @classmethod
    def from_operator_config(cls, settings: SourceSettings, env: Mapping[str, str]) -> SourceGuard:
        """The guard of a worker: the operator config at KILN_CONFIG_PATH (with its env overrides)."""
        path = settings.config_path
        return cls(settings, lambda: load_config(path, env) if path else None)

    def check_path(self, package: str | None, path: str) -> PackageSource:
        """A build from a directory on this host (`source.path`): only the package's configured local
        source (`clone_url` a path or file:// URL, with `allow_file`) may be named, so a forged event
        cannot point a worker at another checkout, another package's files or the host's own."""
        wanted = Path(path).expanduser().resolve()
        for candidate in self._candidates(package):
            if candidate.transport == "file" and _local_path(candidate.url) == wanted:
                return candidate
        raise SourceRefused(
            f"build.requested names the directory {path!r} for package {package!r}, which is not its "
            f"configured local source (packages.{package}.webhooks.clone_url with allow_file: true in "
            "the operator config): refusing to build it"
        )

    def _candidates(self, package: str | None) -> list[PackageSource]:
        try:
            config = self._load_config()
        except ConfigError as exc:
            raise SourceRefused(f"the operator config (KILN_CONFIG_PATH) is invalid: {exc}") from None
        if config is None:
            raise SourceRefused(
                "this service has no operator config (KILN_CONFIG_PATH): it fetches no repository"
            )
        if not package:
            raise SourceRefused("the build names no package: its source cannot be checked")
        return source_candidates(config, package, self._urls)

    def check(self, package: str | None, repo_url: str) -> PackageSource:
        candidates = self._candidates(package)
        for candidate in candidates:
            if candidate.url == repo_url:
                return candidate
        configured = ", ".join(REDACT(c.url) for c in candidates) or "none"
        raise SourceRefused(
            f"build.requested names source {REDACT(repo_url)!r} for package {package!r}, which is not "
            f"its configured source ({configured}; packages.{package}.webhooks.clone_url or repository "
            "and provider in the operator config): refusing to fetch it"
        )


def _local_path(url: str) -> Path:
    """The directory a file-transport clone URL names (`file:///srv/repo` or `/srv/repo`)."""
    return Path(urlsplit(url).path if url.startswith("file:") else url).expanduser().resolve()
