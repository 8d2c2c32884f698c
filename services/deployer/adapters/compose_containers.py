"""What one compose-substrate container is created with, decided in one place, and its digest.

The digest (`spec_digest`, the container's `dev.kiln.spec` label) covers everything the
container is made of: image, command, environment (app secrets included: a rotated secret is a
changed container), mounts (files named by their checksum, so a changed file is a changed mount),
the keys' digest, limits and network. The substrate recreates a container only when it changed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.deployer.scaffold import ScaffoldInputs
from services.deployer.scaffold.hardening import docker_create_options
from services.deployer.scaffold.render import APP_CHECKSUM_LABEL
from services.deployer.topology import APP_CONFIG_MOUNT, CONFIG_MOUNT, KEYS_MOUNT, ServicePlan


@dataclass
class MountedFiles:
    """The state-dir files one release's containers mount (compose_state.StackState)."""

    config: Path
    keys: Path
    keys_digest: str
    app_configs: dict[str, Path] = field(default_factory=dict)


def container_options(
    svc: ServicePlan, inputs: ScaffoldInputs, *, stack: str, network: str, files: MountedFiles
) -> dict[str, Any]:
    """Keyword arguments of `containers.create` for the service, but its name, Kiln's own labels
    and the endpoint config (its alias is in the digest)."""
    volumes: dict[str, dict[str, str]] = {}
    environment = dict(svc.env)
    labels: dict[str, str] = {}
    if svc.kind == "app":
        volumes[str(files.config)] = {"bind": CONFIG_MOUNT, "mode": "ro"}
        volumes[str(files.keys)] = {"bind": KEYS_MOUNT, "mode": "ro"}
        environment = {"KILN_CONFIG": CONFIG_MOUNT, "KILN_KEYS_DIR": KEYS_MOUNT, **environment}
        if svc.name in files.app_configs:
            volumes[str(files.app_configs[svc.name])] = {"bind": APP_CONFIG_MOUNT, "mode": "ro"}
            environment.setdefault("KILN_APP_CONFIG", APP_CONFIG_MOUNT)
            labels[APP_CHECKSUM_LABEL] = inputs.app_config_checksum(svc.name) or ""
        # The values come from the deployer's environment and go through the API, never a file.
        environment.update({name: inputs.secret_values[name] for name in svc.app_secrets})
    for volume in svc.volumes:
        # nocopy: an image directory at the mount point must not hand the volume back to root
        volumes[f"{stack}-{volume.dns_name}"] = {"bind": volume.mount, "mode": "rw,nocopy"}
    if svc.port is not None:
        environment.setdefault("PORT", str(svc.port))
    return {
        "image": inputs.images[svc.name],
        # A Kiln-built image carries its command (through the launcher compiled modules need);
        # only infra images from elsewhere get the configured command.
        "command": list(svc.command) if svc.kind == "infra" and svc.command else None,
        "environment": environment,
        "labels": labels,
        "volumes": volumes,
        "network": network,
        "restart_policy": {"Name": "unless-stopped"},
        **docker_create_options(svc.kind, inputs.workload(svc.name)),
    }


def spec_digest(options: dict[str, Any], alias: str, keys_digest: str) -> str:
    spec = {"options": options, "alias": alias, "keys": keys_digest}
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()
