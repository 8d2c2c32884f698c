"""Per-package config sections: deployment, registry, scan policy, recipients, notify, webhooks,
docs.

Every model is frozen and forbids unknown keys, so a typo is an error that names the key.
Credentials never appear here: the registry section names the environment variables that
hold them (`auth_env`), and the values are read by whoever pushes.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from shared.events.scan import AuditMode
from shared.naming import validate_image_reference
from shared.platforms import DEFAULT, PlatformName

EMAIL_PATTERN = r"^[^@\s<>\"',;]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$"
OCI_COMPONENT_PATTERN = r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*$"
HOST_PATTERN = r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$"
FINDING_ID_PATTERN = r"^(CVE-[0-9]{4}-[0-9]{4,}|GHSA(-[a-z0-9]{4}){3})$"
NAME_PATTERN = r"^[a-z0-9]([a-z0-9_-]*[a-z0-9])?$"
DNS_LABEL_PATTERN = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"
RELATIVE_PATH_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_./-]*$"
ENV_NAME_PATTERN = r"^[A-Z_][A-Z0-9_]*$"
WIKI_PATH_PATTERN = r"^[a-z0-9]([a-z0-9_/-]*[a-z0-9])?$"
LOCALE_PATTERN = r"^[a-z]{2,3}(-[a-z]{2,4})?$"
# A Debian package name (policy 5.6.1) and nothing else: no `=version`, `/suite`, `:arch`, option,
# URL or path. Not ending in `-`: apt-get reads `name-` as "remove name".
DEBIAN_PACKAGE_PATTERN = r"^[a-z0-9][a-z0-9+.-]*[a-z0-9+]$"
# Shown instead of the bare regular expression when a value does not match.
PATTERN_HELP = {
    EMAIL_PATTERN: "must be an email address like name@example.com",
    OCI_COMPONENT_PATTERN: "must be lowercase [a-z0-9] joined by single '.', '_', '__' or '-'",
    NAME_PATTERN: "must be a lowercase name: [a-z0-9], with '-' or '_' only inside",
    DNS_LABEL_PATTERN: "must be a DNS label: lowercase [a-z0-9], with '-' only inside",
    HOST_PATTERN: "must be host[:port], without scheme or path",
    FINDING_ID_PATTERN: "must be a CVE-YYYY-NNNN or GHSA-xxxx-xxxx-xxxx id",
    RELATIVE_PATH_PATTERN: "must be a path relative to the repository root",
    ENV_NAME_PATTERN: "must be an environment variable name like KILN_WIKI_API_KEY",
    WIKI_PATH_PATTERN: "must be a wiki path: lowercase [a-z0-9], '-', '_' and '/' inside, like docs/demo",
    LOCALE_PATTERN: "must be a locale code like en or pt-br",
    DEBIAN_PACKAGE_PATTERN: (
        "must be a Debian package name like imagemagick (lowercase [a-z0-9], '+', '.', '-'): "
        "no version, suite, architecture, option, URL or path"
    ),
}

Email = Annotated[str, StringConstraints(strip_whitespace=True, pattern=EMAIL_PATTERN)]
Platform = PlatformName
Severity = Literal["CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN"]
Port = Annotated[int, Field(ge=1, le=65535)]
NodePort = Annotated[int, Field(ge=30000, le=32767)]
OciComponent = Annotated[str, StringConstraints(pattern=OCI_COMPONENT_PATTERN, max_length=63)]
# Goes into a Dockerfile's FROM line and to docker as is: validated whole (no newline, no space).
ImageReference = Annotated[str, AfterValidator(validate_image_reference)]


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RegistryAuthEnv(Section):
    username: str = "KILN_REGISTRY_USERNAME"
    password: str = "KILN_REGISTRY_PASSWORD"


class RegistryConfig(Section):
    type: Literal["harbor", "registry"] = "registry"
    host: Annotated[str, StringConstraints(pattern=HOST_PATTERN)]
    project: OciComponent = "kiln"
    tenant: OciComponent | None = None
    mirrors: list[str] = []
    auth_env: RegistryAuthEnv = RegistryAuthEnv()


class K3sConfig(Section):
    namespace_env: Annotated[str, StringConstraints(pattern=DNS_LABEL_PATTERN)] = "dev"
    kubernetes_version: Annotated[str, StringConstraints(pattern=r"^1\.[0-9]+$")] = "1.29"
    context: str | None = None


class VolumeConfig(Section):
    mount: Annotated[str, StringConstraints(pattern=r"^/")]
    size: Annotated[str, StringConstraints(pattern=r"^[0-9]+(Mi|Gi|Ti)$")] = "1Gi"
    services: list[str] = []


class VerifyConfig(Section):
    retries: Annotated[int, Field(ge=0, le=100)] = 5
    delay_s: Annotated[float, Field(ge=0, le=600)] = 10.0
    pass_threshold: Annotated[float, Field(ge=0, le=100)] = 90.0


class WorkloadConfig(Section):
    """How one deployed service's containers are confined. Operator config only (deployment.*)."""

    cpus: Annotated[float, Field(gt=0, le=64)] = 1.0
    memory: Annotated[str, StringConstraints(pattern=r"^[0-9]+(Mi|Gi)$")] = "512Mi"
    pids: Annotated[int, Field(ge=16, le=65536)] = 512
    # A read-only root filesystem (tmpfs /tmp, volumes writable) unless the service needs to write it.
    writable_root: bool = False


class DeploymentConfig(Section):
    substrate: Literal["compose", "k8s", "supervisor"] = "compose"
    platforms: Annotated[list[Platform], Field(min_length=1)] = [DEFAULT.name]
    registry: RegistryConfig
    k3s: K3sConfig = K3sConfig()
    volumes: dict[str, VolumeConfig] = {}
    verify: VerifyConfig = VerifyConfig()
    # Limits and root filesystem of every deployed service; `workloads.<service>` replaces it for one.
    workload: WorkloadConfig = WorkloadConfig()
    workloads: dict[str, WorkloadConfig] = {}
    # Base image per platform for compiled services; empty means the imager's KILN_BASE_IMAGE_<ARCH>.
    base_images: dict[Platform, ImageReference] = {}
    # Deploy only images signed by the attester's key (checked with the containers policy, as
    # podman and CRI-O do); an unsigned or foreign-signed image fails the build at deploy.
    require_signature: bool = True

    @model_validator(mode="after")
    def _platforms_unique(self) -> DeploymentConfig:
        if len(set(self.platforms)) != len(self.platforms):
            raise ValueError("platforms must not repeat a platform")
        return self


class AllowedFinding(Section):
    """A vulnerability accepted on purpose; expired entries stop counting (the scanner decides)."""

    id: Annotated[str, StringConstraints(pattern=FINDING_ID_PATTERN)]
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3)]
    expires: dt.date


class ScanPolicy(Section):
    max: dict[Severity, Annotated[int, Field(ge=0)]] = {"CRITICAL": 0}
    ignore_unfixed: bool = False
    allow: list[AllowedFinding] = []
    require_vuln_db: bool = False


SEVERITY_ORDER: tuple[str, ...] = get_args(Severity)  # worst first


class AuditConfig(Section):
    """The audit stage (issue #14): which audits run on every pushed image, and which of them stop
    the deploy. Operator config only: a gate the pushed branch could switch off would not be one."""

    modes: list[AuditMode] = []
    # Modes whose findings fail the stage, so the deploy gate refuses; the others only report.
    fail_on: list[AuditMode] = []
    # Per mode in fail_on, the lowest severity that fails it; a mode not listed: any finding fails.
    fail_at: dict[AuditMode, Severity] = {}

    @model_validator(mode="after")
    def _consistent(self) -> AuditConfig:
        if len(set(self.modes)) != len(self.modes):
            raise ValueError("modes must not repeat a mode")
        not_run = [mode for mode in self.fail_on if mode not in self.modes]
        if not_run:
            raise ValueError(f"fail_on names {', '.join(not_run)}, which modes does not run; add it to modes")
        not_gating = [mode for mode in self.fail_at if mode not in self.fail_on]
        if not_gating:
            raise ValueError(f"fail_at names {', '.join(not_gating)}, which is not in fail_on")
        return self

    def gates(self, mode: str) -> bool:
        return mode in self.fail_on

    def fails(self, mode: str, severity: str) -> bool:
        """Does a finding of `severity` in `mode` fail the stage?"""
        if mode not in self.fail_on:
            return False
        floor = self.fail_at.get(mode, "UNKNOWN")  # type: ignore[call-overload]
        return SEVERITY_ORDER.index(severity) <= SEVERITY_ORDER.index(floor)


class Recipient(Section):
    email: Email
    name: str | None = None
    active: bool = True


class RaciConfig(Section):
    responsible: Recipient | None = None
    accountable: Recipient | None = None
    consulted: list[Recipient] = []
    informed: list[Recipient] = []

    def active_emails(self) -> list[str]:
        """Every active recipient's address, once, in R-A-C-I order."""
        people = [self.responsible, self.accountable, *self.consulted, *self.informed]
        emails = [p.email for p in people if p is not None and p.active]
        return list(dict.fromkeys(emails))


class NotifyConfig(Section):
    when: list[Literal["started", "failed", "succeeded", "cancelled"]] = ["failed"]
    to: list[Email] = []


# owner/name (GitHub, Bitbucket Cloud workspace/slug, Bitbucket Server PROJECT/slug).
REPOSITORY_PATTERN = r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$"
PATTERN_HELP[REPOSITORY_PATTERN] = "must be owner/name as the provider spells it, like example/monorepo"


ConcurrencyMode = Literal["queue", "supersede"]


class ConcurrencyConfig(Section):
    """How many builds of one branch of the package run at once, and what a newer push does when
    they are all taken (services/gateway/concurrency.py, docs/gateway.md "Concurrency groups").
    Operator config only (a repository's config.yaml may not set it). Unset keys fall back to the
    gateway's KILN_CONCURRENCY_LIMIT / KILN_CONCURRENCY_MODE."""

    # 0: no group, builds of a branch run side by side (only KILN_MAX_BUILDS_PER_BRANCH bounds them).
    limit: Annotated[int, Field(ge=0, le=100)] | None = None
    # queue: the newer build waits for a slot (FIFO); supersede: it starts, and the oldest running
    # build of the branch is cancelled at its next stage boundary.
    mode: ConcurrencyMode | None = None


class WebhookConfig(Section):
    """Where a package's code comes from and which pushes build it. Operator config only: the
    clone URL is this section's `clone_url`, or `repository` under the provider's base URL
    (KILN_GITHUB_URL, KILN_BITBUCKET_CLOUD_URL, KILN_BITBUCKET_SERVER_URL); never a payload's URL."""

    repository: Annotated[str, StringConstraints(pattern=REPOSITORY_PATTERN)] | None = None
    branches: list[str] = ["*"]
    tags: bool = False
    # The provider that hosts `repository`: only its webhook route builds the package, and API/CLI
    # builds clone from it. Unset: any provider's signed push for `repository` builds, from that
    # provider's base URL; API builds then need `clone_url`.
    provider: Literal["github", "bitbucket-cloud", "bitbucket-server"] | None = None
    # Clone from here instead of the provider's URL (an internal mirror, or a local path for the
    # quick start). No credentials in it: tokens come from KILN_GIT_TOKEN (KILN_GIT_TOKEN_HOSTS).
    clone_url: str | None = None
    # Plain http:// and git:// (unencrypted, unauthenticated, never sent the token) and file://
    # or local paths (the fetching host's own disk): refused unless the operator allows them here.
    allow_http: bool = False
    allow_file: bool = False

    @field_validator("clone_url")
    @classmethod
    def _no_credentials_in_clone_url(cls, value: str | None) -> str | None:
        # user:password@ anywhere, and any user@ over http(s) (a token passed as the user name);
        # ssh://git@host/... names the ssh login, not a secret.
        if value and re.search(r"://[^/@]+:[^/@]*@|^https?://[^/@]+@", value, re.IGNORECASE):
            raise ValueError("clone_url must not contain credentials (set KILN_GIT_TOKEN instead)")
        if value and (
            value.startswith("-") or re.search(r"\s", value) or value.startswith(("ext::", "fd::"))
        ):
            raise ValueError("clone_url must be a git URL or path (no spaces, no leading '-', no ext::/fd::)")
        return value

    @field_validator("repository")
    @classmethod
    def _no_dot_segments(cls, value: str | None) -> str | None:
        if value and any(part in (".", "..") for part in value.split("/")):
            raise ValueError("repository must be owner/name without '.' or '..' parts")
        return value


class KeysConfig(Section):
    """Where `{package}_private.pem` / `{package}_public.pem` live: outside the source tree."""

    dir: Annotated[str, StringConstraints(min_length=1)]


class CompileConfig(Section):
    fallback_to_source: list[str] = []


class WikiConfig(Section):
    """A Wiki.js 2.x site the built docs are published to (GraphQL API at `{url}/graphql`)."""

    url: Annotated[str, StringConstraints(pattern=r"^https?://[^\s/]+(/[^\s]*)?$")]
    # Pages go under `{path_prefix}/…`; unset: the package name.
    path_prefix: Annotated[str, StringConstraints(pattern=WIKI_PATH_PATTERN)] | None = None
    locale: Annotated[str, StringConstraints(pattern=LOCALE_PATTERN)] = "en"
    # The variable holding the API key (Wiki.js: Administration > API Access): never the key itself.
    api_key_env: Annotated[str, StringConstraints(pattern=ENV_NAME_PATTERN)] = "KILN_WIKI_API_KEY"
    tags: list[str] = ["kiln"]

    @field_validator("url")
    @classmethod
    def _no_credentials_in_url(cls, value: str) -> str:
        if re.search(r"://[^/@]+@", value):
            raise ValueError("url must not contain credentials (the API key comes from api_key_env)")
        return value.rstrip("/")


class DocsConfig(Section):
    """Seed stage 12: build the repository's docs with MkDocs after a healthy deploy, and publish
    them to a wiki (without `wiki`, the docs are built only: a check that they still build)."""

    enabled: bool = True
    mkdocs: Annotated[str, StringConstraints(pattern=RELATIVE_PATH_PATTERN)] = "mkdocs.yml"
    wiki: WikiConfig | None = None
    # warn: a docs failure is reported on the docs stage, the build still succeeds (a wiki outage
    # does not undo a good deploy); fail: the build fails at stage docs (the deploy stays).
    on_failure: Literal["warn", "fail"] = "warn"

    @field_validator("mkdocs")
    @classmethod
    def _inside_repository(cls, value: str) -> str:
        if ".." in value.split("/"):
            raise ValueError("must stay inside the repository (no '..')")
        return value
