"""The pipeline's config.yaml: factories, tiers, packages and their services.

Structure and value rules live here; rules that relate one part of the file to another
(a service's tier exists, ports are unique) live in `cross_checks`, so that every error
of a file is reported in one pass.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints, model_validator

from shared.config.app_sections import AppConfigSpec, AppSecret, AppSection, EnvName
from shared.config.sections import (
    NAME_PATTERN,
    AuditConfig,
    CompileConfig,
    ConcurrencyConfig,
    DeploymentConfig,
    DocsConfig,
    ImageReference,
    KeysConfig,
    NodePort,
    NotifyConfig,
    OciComponent,
    Port,
    RaciConfig,
    ScanPolicy,
    Section,
    WebhookConfig,
)
from shared.naming import DEFAULT_VERSION_MAP

# Package, service, factory and tier names end up in image names and DNS labels.
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=40)]
HealthPath = Annotated[str, StringConstraints(pattern=r"^/[^\s]*$")]


class FactoryConfig(Section):
    """A top-level module folder of the monorepo, relative to the repository root."""

    path: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_./-]*$")]


class TierConfig(Section):
    """A requirements set built once per platform as a venv layer."""

    requirements: list[str] = []
    arm_exclude: list[str] = []


class InfraService(Section):
    """A service every package deploys from a ready image (e.g. redis)."""

    image: ImageReference
    command: list[str] = []
    port: Port | None = None
    replicas: Annotated[int, Field(ge=0)] = 1
    health: HealthPath | None = None
    env: dict[str, str] = {}


class ServiceConfig(Section):
    """One per-service image of a package."""

    command: Annotated[list[str], Field(min_length=1)]
    port: Port | None = None
    replicas: Annotated[int, Field(ge=0, le=100)] = 1
    node_port: NodePort | None = None
    health: HealthPath | None = None
    factories: list[Name] = []
    tier: Name | None = None
    feature: str | None = None
    dockerfile: str | None = None
    env: dict[str, str] = {}
    # The sections of the package's app_config this service reads (operator only); none by default:
    # a service sees only what it is declared to read.
    app_config_sections: list[AppSection] = []

    @model_validator(mode="after")
    def _tier_or_dockerfile(self) -> ServiceConfig:
        if self.dockerfile and self.tier:
            raise ValueError("set either tier (compiled build) or dockerfile (plain build), not both")
        if not self.dockerfile and not self.tier:
            raise ValueError("needs a tier (compiled build) or a dockerfile (plain build)")
        if self.health and self.port is None:
            raise ValueError("health needs a port to probe")
        if self.node_port is not None and self.port is None:
            raise ValueError("node_port needs a port to expose")
        return self


class BaseSection(Section):
    services: dict[Name, InfraService] = {}


class PackageConfig(Section):
    factories: Annotated[list[Name], Field(min_length=1)]
    compile: CompileConfig = CompileConfig()
    keys: KeysConfig
    services: Annotated[dict[Name, ServiceConfig], Field(min_length=1)]
    features: dict[str, bool] = {}
    deployment: DeploymentConfig
    scan: ScanPolicy = ScanPolicy()
    audit: AuditConfig = AuditConfig()
    raci: RaciConfig = RaciConfig()
    notify: NotifyConfig = NotifyConfig()
    webhooks: WebhookConfig = WebhookConfig()
    concurrency: ConcurrencyConfig = ConcurrencyConfig()
    docs: DocsConfig | None = None
    # The app's own configuration file and secrets (operator only; shared/config/app_sections.py).
    app_config: AppConfigSpec | None = None
    app_secrets: dict[EnvName, AppSecret] = {}

    def gated_stages(self) -> frozenset[str]:
        """The optional stages (shared.stages, `optional`) this package turns on that the deploy
        gate must wait for: `audit` when any audit mode runs."""
        return frozenset({"audit"} if self.audit.modes else ())

    def enabled_services(self) -> dict[str, ServiceConfig]:
        """Services whose feature flag is on (a service without a feature is always on)."""
        return {
            name: svc
            for name, svc in self.services.items()
            if svc.feature is None or self.features.get(svc.feature, False)
        }


class KilnConfig(Section):
    version_map: dict[str, OciComponent] = dict(DEFAULT_VERSION_MAP)
    base: BaseSection = BaseSection()
    factories: Annotated[dict[Name, FactoryConfig], Field(min_length=1)]
    tiers: dict[Name, TierConfig] = {}
    packages: Annotated[dict[Name, PackageConfig], Field(min_length=1)]

    def package(self, name: str) -> PackageConfig:
        try:
            return self.packages[name]
        except KeyError:
            known = ", ".join(sorted(self.packages))
            raise KeyError(f"no package {name!r} in config (known: {known})") from None
