"""The slice of the config a package's pods may see (ConfigMap / mounted file).

Only what running services need: their own definitions, feature flags and the version
map. No other package, no recipients, no scan policy, no registry or key locations.
Written as JSON (a subset of YAML) so stdlib-only services can read it.
"""

from __future__ import annotations

from typing import Any

from shared.config.models import KilnConfig

TRIMMED_SCHEMA_VERSION = 1


def trimmed_config(cfg: KilnConfig, package: str) -> dict[str, Any]:
    """JSON-ready dict for `package`: services (enabled or not), base services, features."""
    pkg = cfg.package(package)
    enabled = pkg.enabled_services()
    services = {
        name: {
            # The app's own config is a file of its own (KILN_APP_CONFIG), not part of Kiln's.
            **svc.model_dump(
                mode="json", exclude={"dockerfile", "node_port", "replicas", "app_config_sections"}
            ),
            "enabled": name in enabled,
        }
        for name, svc in pkg.services.items()
    }
    return {
        "schema": TRIMMED_SCHEMA_VERSION,
        "package": package,
        "version_map": dict(cfg.version_map),
        "factories": {f: cfg.factories[f].path for f in pkg.factories},
        "services": services,
        "base_services": {name: svc.model_dump(mode="json") for name, svc in cfg.base.services.items()},
        "features": dict(pkg.features),
        "volumes": {
            name: vol.model_dump(mode="json", include={"mount", "services"})
            for name, vol in pkg.deployment.volumes.items()
        },
    }
