"""Everything a template may use, gathered once from config (and the build's image references)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from services.deployer.topology import Topology, plan_topology
from shared.bus import PermanentError
from shared.config import KilnConfig, PackageConfig, RegistryConfig, registry_credentials, trimmed_config
from shared.config.app_config import decode_document, service_view
from shared.config.sections import WorkloadConfig
from shared.naming import image_ref, safe_name
from shared.platforms import DEFAULT

DEFAULT_PLATFORM = DEFAULT.name


@dataclass(frozen=True)
class ScaffoldSource:
    """What a generated file's header names as its origin."""

    config_name: str
    package: str


class SecretValues(Mapping[str, str]):
    """The app secrets' values by name (read from the deployer's environment at deploy time). Its
    repr never shows them, so neither does a ScaffoldInputs printed in a log line or a traceback."""

    def __init__(self, values: Mapping[str, str] | None = None):
        self._values = dict(values or {})

    def __getitem__(self, name: str) -> str:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"SecretValues({', '.join(sorted(self._values))}: values hidden)"


def checksum(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class ScaffoldInputs:
    topology: Topology
    images: Mapping[str, str]
    config_json: str
    keys_dir: str
    registry: RegistryConfig
    credentials: tuple[str, str] | None
    source: ScaffoldSource
    app_version: str
    default_workload: WorkloadConfig = field(default_factory=WorkloadConfig)
    workloads: Mapping[str, WorkloadConfig] = field(default_factory=dict)
    # The app's own config: the build's trimmed document (JSON text, what a rollback restores) and
    # the file each reading service mounts (service -> JSON text: the sections it reads).
    app_document: str | None = None
    app_configs: Mapping[str, str] = field(default_factory=dict)
    # The app secrets' sources (NAME -> the deployer's variable) and, when deploying, their
    # values; rendering files never has the values (they are never written into one).
    secret_sources: Mapping[str, str] = field(default_factory=dict)
    secret_values: SecretValues = field(default_factory=SecretValues)

    def workload(self, service: str) -> WorkloadConfig:
        """Operator config: `deployment.workloads.<service>`, else `deployment.workload`."""
        return self.workloads.get(service, self.default_workload)

    @property
    def config_checksum(self) -> str:
        return checksum(self.config_json)

    def app_config_checksum(self, service: str) -> str | None:
        """Of the file the service mounts: its pods restart when it changes, the others do not."""
        text = self.app_configs.get(service)
        return checksum(text) if text is not None else None

    @property
    def network(self) -> str:
        return safe_name(self.topology.package)


def scaffold_inputs(
    cfg: KilnConfig,
    package: str,
    *,
    config_path: str | Path,
    env: Mapping[str, str],
    images: Mapping[str, str] | None = None,
    version: str | None = None,
    tag: str = "latest",
    app_document: str | None = None,
    secret_values: Mapping[str, str] | None = None,
) -> ScaffoldInputs:
    """`images` maps a service to the reference to deploy; services missing get the
    `{version}-{service}-{package}:{tag}` reference of the registry the config names.
    `app_document` is the build's trimmed app config (required when a service reads a section of
    `app_config`), `secret_values` the app secrets' values (deploying only)."""
    pkg = cfg.package(package)
    topology = plan_topology(cfg, package)
    unknown = sorted(set(pkg.deployment.workloads) - {svc.name for svc in topology.services})
    if unknown:  # a typo would silently leave a service on the default limits
        raise PermanentError(
            f"deployment.workloads of package {package} names {', '.join(unknown)}, which is no "
            f"enabled service of it: use one of {', '.join(s.name for s in topology.services)}"
        )
    registry = pkg.deployment.registry
    version = version or cfg.version_map.get("*", "prism")
    chosen = dict(images or {})
    for svc in topology.services:
        if svc.kind == "infra":
            chosen[svc.name] = svc.image or ""
        elif svc.name not in chosen:
            chosen[svc.name] = image_ref(
                registry.host,
                registry.project,
                version,
                svc.name,
                package,
                DEFAULT_PLATFORM,
                tag,
                tenant=registry.tenant,
            )
    return ScaffoldInputs(
        topology=topology,
        images=chosen,
        # Sorted and indented: the same config always gives the same bytes (and checksum).
        config_json=json.dumps(trimmed_config(cfg, package), indent=2, sort_keys=True) + "\n",
        keys_dir=pkg.keys.dir,
        registry=registry,
        credentials=registry_credentials(registry, env),
        source=ScaffoldSource(config_name=Path(config_path).name, package=package),
        app_version=version,
        default_workload=pkg.deployment.workload,
        workloads=dict(pkg.deployment.workloads),
        app_document=app_document,
        app_configs=_app_configs(package, pkg, topology, app_document),
        secret_sources={name: secret.env for name, secret in sorted(pkg.app_secrets.items())},
        secret_values=SecretValues(secret_values),
    )


def _app_configs(
    package: str, pkg: PackageConfig, topology: Topology, document: str | None
) -> dict[str, str]:
    readers = [svc for svc in topology.apps if svc.app_config_sections]
    if pkg.app_config is None or not readers:
        return {}
    if document is None:
        raise PermanentError(
            f"packages.{package}.app_config: the services {', '.join(s.name for s in readers)} read the app "
            "config, but no trimmed document was given (a build carries it; the CLI takes --app-config FILE)"
        )
    sections = decode_document(document.encode())
    missing = sorted({name for svc in readers for name in svc.app_config_sections} - set(sections))
    if missing:
        raise PermanentError(
            f"packages.{package}.app_config.sections: {', '.join(missing)} not in the trimmed app config"
        )
    return {svc.name: service_view(sections, svc.app_config_sections) for svc in readers}
