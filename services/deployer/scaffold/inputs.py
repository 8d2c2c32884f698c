"""Everything a template may use, gathered once from config (and the build's image references)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from services.deployer.topology import Topology, plan_topology
from shared.bus import PermanentError
from shared.config import KilnConfig, RegistryConfig, registry_credentials, trimmed_config
from shared.config.sections import WorkloadConfig
from shared.naming import image_ref, safe_name
from shared.platforms import DEFAULT

DEFAULT_PLATFORM = DEFAULT.name


@dataclass(frozen=True)
class ScaffoldSource:
    """What a generated file's header names as its origin."""

    config_name: str
    package: str


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

    def workload(self, service: str) -> WorkloadConfig:
        """Operator config: `deployment.workloads.<service>`, else `deployment.workload`."""
        return self.workloads.get(service, self.default_workload)

    @property
    def config_checksum(self) -> str:
        return "sha256:" + hashlib.sha256(self.config_json.encode()).hexdigest()

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
) -> ScaffoldInputs:
    """`images` maps a service to the reference to deploy; services missing get the
    `{version}-{service}-{package}:{tag}` reference of the registry the config names."""
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
    )
