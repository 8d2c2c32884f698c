"""The deployment topology of a package, derived from config alone (a pure function).

Every generator (chart, compose file, Caddyfile, supervisor sections) and every substrate reads
this plan, so names, ports and routes are decided once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from shared.config import KilnConfig
from shared.config.app_config import secret_receivers
from shared.naming import namespace, safe_name

CONFIG_MOUNT = "/etc/kiln/config.json"
KEYS_MOUNT = "/etc/kiln/keys"
# The app's own config (the sections this service reads of packages.<p>.app_config), read-only;
# its path is in KILN_APP_CONFIG.
APP_CONFIG_MOUNT = "/etc/kiln/app-config.json"


@dataclass(frozen=True)
class VolumePlan:
    name: str  # config key, `_` kept (it is a config name)
    dns_name: str  # `_` -> `-`: what k8s, compose and Docker accept
    mount: str
    size: str


@dataclass(frozen=True)
class ServicePlan:
    name: str
    dns_name: str
    kind: Literal["app", "infra"]
    command: tuple[str, ...]
    port: int | None
    replicas: int
    node_port: int | None = None
    health: str | None = None
    image: str | None = None  # infra services name theirs; app images come from the build
    env: tuple[tuple[str, str], ...] = ()
    volumes: tuple[VolumePlan, ...] = ()
    route: str | None = None  # path prefix Caddy routes to this service
    # The app's own config: the sections of packages.<p>.app_config it reads (mounted when any),
    # and the names of the app secrets its containers get (their values: the deployer's env).
    app_config_sections: tuple[str, ...] = ()
    app_secrets: tuple[str, ...] = ()


@dataclass(frozen=True)
class Topology:
    package: str
    namespace: str
    services: tuple[ServicePlan, ...]
    volumes: tuple[VolumePlan, ...] = field(default=())

    def service(self, name: str) -> ServicePlan:
        for svc in self.services:
            if svc.name == name:
                return svc
        raise KeyError(f"no service {name!r} in the topology of {self.package}")

    @property
    def apps(self) -> tuple[ServicePlan, ...]:
        return tuple(s for s in self.services if s.kind == "app")

    @property
    def infra(self) -> tuple[ServicePlan, ...]:
        return tuple(s for s in self.services if s.kind == "infra")

    @property
    def routed(self) -> tuple[ServicePlan, ...]:
        return tuple(s for s in self.services if s.route is not None)


def plan_topology(cfg: KilnConfig, package: str, env_name: str | None = None) -> Topology:
    """Infra services of `base.services` first, then the package's enabled services, each sorted
    by name so that regenerating from the same config gives the same files."""
    pkg = cfg.package(package)
    env_name = env_name or pkg.deployment.k3s.namespace_env
    receivers = secret_receivers(pkg)
    volumes = tuple(
        VolumePlan(name=name, dns_name=safe_name(name), mount=vol.mount, size=vol.size)
        for name, vol in sorted(pkg.deployment.volumes.items())
    )
    infra = tuple(
        ServicePlan(
            name=name,
            dns_name=safe_name(name),
            kind="infra",
            command=tuple(svc.command),
            port=svc.port,
            replicas=svc.replicas,
            health=svc.health,
            image=svc.image,
            env=tuple(sorted(svc.env.items())),
        )
        for name, svc in sorted(cfg.base.services.items())
    )
    apps = tuple(
        ServicePlan(
            name=name,
            dns_name=safe_name(name),
            kind="app",
            command=tuple(svc.command),
            port=svc.port,
            replicas=svc.replicas,
            node_port=svc.node_port,
            health=svc.health,
            env=tuple(sorted(svc.env.items())),
            volumes=tuple(v for v in volumes if name in pkg.deployment.volumes[v.name].services),
            # Only services that speak HTTP (a health path) are routed; a bare port may be TCP.
            route=f"/{safe_name(name)}" if svc.port is not None and svc.health else None,
            app_config_sections=tuple(svc.app_config_sections),
            app_secrets=tuple(sorted(secret for secret, users in receivers.items() if name in users)),
        )
        for name, svc in sorted(pkg.enabled_services().items())
    )
    return Topology(
        package=package, namespace=namespace(package, env_name), services=infra + apps, volumes=volumes
    )
