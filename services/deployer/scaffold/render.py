"""Renders the scaffold from the templates in ./templates; nothing here writes YAML by hand.

Chart approach (helm cannot run here, and a chart must validate): the chart's templates are
rendered by Jinja2 into plain Kubernetes manifests with every value inlined, which Helm also
accepts as templates. values.yaml documents those values. The one exception is
templates/secret.yaml, a real Helm template fed by `--set-file` at install time, because the
PEM keys must never be written into the chart; the k8s substrate renders the same template
with the keys in memory (`chart_manifests(inputs, keys=...)`). templates/app-secret.yaml (the
package's app secrets) is the same kind of template, its values given at install time too.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
from pathlib import Path
from typing import Any

import yaml
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from services.deployer.scaffold.hardening import (
    APP_UID,
    NO_NEW_PRIVILEGES,
    TMP_MOUNT,
    TMPFS_OPTIONS,
    container_resources,
    container_security_context,
    docker_memory,
    key_files,
    pod_security_context,
)
from services.deployer.scaffold.helm_template import (
    SECRET_TEMPLATES,
    app_secret_mark,
    helm_template,
    key_mark,
)
from services.deployer.scaffold.inputs import ScaffoldInputs
from services.deployer.topology import APP_CONFIG_MOUNT, CONFIG_MOUNT, KEYS_MOUNT, ServicePlan, VolumePlan
from shared.registry.transport import is_loopback

TEMPLATES = Path(__file__).parent / "templates"
CHECKSUM_ANNOTATION = "kiln.dev/config-checksum"
# On the pods (k8s) and containers (compose) of the services that read the app config: the
# checksum of the file they mount, so a change of it restarts them and only them.
APP_CHECKSUM_ANNOTATION = "kiln.dev/app-config-checksum"
APP_CHECKSUM_LABEL = "dev.kiln.app-config-checksum"
# Holds registry credentials when they are set: never committed, readable by its owner only.
PRIVATE_FILES = ("k3s/registries.yaml",)


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    # JSON strings are valid YAML scalars: every value is quoted safely whatever it contains.
    env.filters["q"] = lambda value: json.dumps(value)
    # `docker compose` expands ${VAR} anywhere in its file, configs' content included: repository
    # content ("${KILN_REGISTRY_PASSWORD}" in the app config) must reach the container as written.
    env.filters["compose_literal"] = lambda text: str(text).replace("$", "$$")
    env.filters["to_yaml"] = lambda data: yaml.safe_dump(data, sort_keys=True).rstrip("\n")
    env.filters["shell_join"] = lambda args: shlex.join(args)
    env.filters["supervisor_escape"] = lambda v: str(v).replace("%", "%%").replace('"', '\\"')
    return env


_ENV = _environment()


class _Names:
    def __init__(self, package: str):
        self.configmap = f"{package}-config"
        self.secret = f"{package}-keys"
        self.app_configmap = f"{package}-app-config"
        self.app_secret = f"{package}-app-secrets"
        self._package = package

    def volume(self, volume: VolumePlan) -> str:
        return f"{self._package}-{volume.dns_name}"


def app_config_key(svc: ServicePlan) -> str:
    """The service's file in the app-config ConfigMap."""
    return f"{svc.dns_name}.json"


def _context(inputs: ScaffoldInputs, keys: tuple[bytes, bytes] | None) -> dict[str, Any]:
    topology = inputs.topology
    package = inputs.network

    def labels(svc: ServicePlan) -> str:
        return yaml.safe_dump(
            {
                "app.kubernetes.io/name": svc.dns_name,
                "app.kubernetes.io/instance": package,
                "app.kubernetes.io/component": svc.kind,
                "app.kubernetes.io/part-of": package,
                "app.kubernetes.io/managed-by": "kiln",
            },
            sort_keys=True,
        ).rstrip("\n")

    def selector(svc: ServicePlan) -> str:
        return yaml.safe_dump(
            {"app.kubernetes.io/name": svc.dns_name, "app.kubernetes.io/instance": package}, sort_keys=True
        ).rstrip("\n")

    def env_of(svc: ServicePlan, host: bool = False) -> list[tuple[str, str]]:
        base = {
            "KILN_CONFIG": f"/etc/kiln/{package}/config.json" if host else CONFIG_MOUNT,
            "KILN_KEYS_DIR": inputs.keys_dir if host else KEYS_MOUNT,
        }
        if svc.kind == "infra":
            base = {}
        elif svc.name in inputs.app_configs and not host:
            base["KILN_APP_CONFIG"] = APP_CONFIG_MOUNT
        if svc.port is not None:
            base["PORT"] = str(svc.port)
        base.update(dict(svc.env))  # the service's own env overrides the defaults
        return sorted(base.items())

    def secret_value(field: str) -> str:
        if keys is None:
            # A placeholder: helm_template() turns it into the one Helm action of the chart.
            return key_mark(field)
        pem = keys[0] if field == "privatePem" else keys[1]
        return json.dumps(base64.b64encode(pem).decode())

    def app_secret_value(name: str) -> str:
        if keys is None:
            return app_secret_mark(name)
        return json.dumps(base64.b64encode(inputs.secret_values[name].encode()).decode())

    return {
        "topology": topology,
        "images": inputs.images,
        "config_json": inputs.config_json,
        "config_checksum": inputs.config_checksum,
        "checksum_annotation": CHECKSUM_ANNOTATION,
        "config_mount": CONFIG_MOUNT,
        "keys_mount": KEYS_MOUNT,
        "keys_dir": inputs.keys_dir,
        "registry": inputs.registry,
        "registry_endpoints": _registry_endpoints(inputs),
        "credentials": inputs.credentials,
        "source": inputs.source,
        "app_version": inputs.app_version,
        "network": inputs.network,
        "names": _Names(package),
        "common_labels": yaml.safe_dump(
            {"app.kubernetes.io/part-of": package, "app.kubernetes.io/managed-by": "kiln"}, sort_keys=True
        ).rstrip("\n"),
        "labels": labels,
        "selector": selector,
        "env_of": env_of,
        "secret_value": secret_value,
        # the app's own config and secrets (services.deployer.app_config)
        "app_config_mount": APP_CONFIG_MOUNT,
        "app_configs": inputs.app_configs,
        "app_config_checksum": inputs.app_config_checksum,
        "app_checksum_annotation": APP_CHECKSUM_ANNOTATION,
        "app_checksum_label": APP_CHECKSUM_LABEL,
        "app_config_key": app_config_key,
        "secret_sources": inputs.secret_sources,
        "app_secret_value": app_secret_value,
        # hardening (services.deployer.scaffold.hardening): one decision for compose and the chart
        "workload_of": lambda svc: inputs.workload(svc.name),
        "key_files": key_files(topology.package),
        "app_uid": APP_UID,
        "tmp_mount": TMP_MOUNT,
        "tmpfs_options": TMPFS_OPTIONS,
        "no_new_privileges": NO_NEW_PRIVILEGES,
        "docker_memory": docker_memory,
        "volume_owners": _volume_owners(inputs),
        "pod_security_context": pod_security_context(),
        "security_of": lambda svc: container_security_context(inputs.workload(svc.name)),
        "resources_of": lambda svc: container_resources(inputs.workload(svc.name)),
    }


def _volume_owners(inputs: ScaffoldInputs) -> list[tuple[VolumePlan, str]]:
    """Each mounted volume with the image of the first app that mounts it (it has python3)."""
    owners: dict[str, tuple[VolumePlan, str]] = {}
    for app in inputs.topology.apps:
        for volume in app.volumes:
            owners.setdefault(volume.dns_name, (volume, inputs.images[app.name]))
    return [owners[name] for name in sorted(owners)]


def _registry_endpoints(inputs: ScaffoldInputs) -> list[str]:
    host = inputs.registry.host
    return [f"{'http' if is_loopback(host) else 'https'}://{host}", *inputs.registry.mirrors]


def _render(name: str, context: dict[str, Any], **extra: Any) -> str:
    return _ENV.get_template(name).render(**context, **extra)


def render_chart_templates(inputs: ScaffoldInputs, keys: tuple[bytes, bytes] | None = None) -> dict[str, str]:
    """`templates/<file>` -> text, in apply order (config and storage before workloads). Without
    `keys` the files are Helm templates (helm_template); with them, plain manifests to apply."""
    if keys is None:
        return {
            name: helm_template(text, secrets=name in SECRET_TEMPLATES)
            for name, text in _render_chart(inputs, None).items()
        }
    return _render_chart(inputs, keys)


def _render_chart(inputs: ScaffoldInputs, keys: tuple[bytes, bytes] | None) -> dict[str, str]:
    ctx = _context(inputs, keys)
    files = {
        "templates/configmap.yaml": _render("chart/configmap.yaml.j2", ctx),
        "templates/secret.yaml": _render("chart/secret.yaml.j2", ctx),
    }
    if inputs.app_configs:
        files["templates/app-configmap.yaml"] = _render("chart/app-configmap.yaml.j2", ctx)
    if inputs.secret_sources:
        files["templates/app-secret.yaml"] = _render("chart/app-secret.yaml.j2", ctx)
    for volume in inputs.topology.volumes:
        files[f"templates/pvc-{volume.dns_name}.yaml"] = _render("chart/pvc.yaml.j2", ctx, volume=volume)
    for svc in inputs.topology.services:
        if svc.port is not None:
            files[f"templates/service-{svc.dns_name}.yaml"] = _render("chart/service.yaml.j2", ctx, svc=svc)
        kind = "statefulset" if svc.kind == "infra" else "deployment"
        files[f"templates/{kind}-{svc.dns_name}.yaml"] = _render(f"chart/{kind}.yaml.j2", ctx, svc=svc)
    return files


def chart_manifests(inputs: ScaffoldInputs, keys: tuple[bytes, bytes]) -> list[dict[str, Any]]:
    """The chart's objects with the keys filled in, in memory only (what the k8s substrate applies)."""
    docs = []
    for text in render_chart_templates(inputs, keys).values():
        docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


def render_scaffold(inputs: ScaffoldInputs) -> dict[str, str]:
    """Relative path -> content of every generated file."""
    ctx = _context(inputs, None)
    package = inputs.network
    files = {
        "chart/Chart.yaml": _render("chart/Chart.yaml.j2", ctx),
        "chart/values.yaml": _render("chart/values.yaml.j2", ctx),
        **{f"chart/{path}": text for path, text in render_chart_templates(inputs).items()},
        "compose/compose.yaml": _render("compose.yaml.j2", ctx),
        "caddy/Caddyfile": _render("Caddyfile.j2", ctx),
        "k3s/registries.yaml": _render("registries.yaml.j2", ctx),
        f"supervisor/{package}.conf": _render("supervisor.conf.j2", ctx),
    }
    files[".gitignore"] = (
        "# GENERATED by the Kiln deployer: files that may hold credentials are never committed.\n"
        + "".join(f"/{path}\n" for path in PRIVATE_FILES)
    )
    return files


def write_scaffold(files: dict[str, str], out: Path) -> list[Path]:
    """Write the files under `out`; unchanged files are not touched (mtime kept)."""
    written = []
    for relative, text in sorted(files.items()):
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        if relative in PRIVATE_FILES:
            path.unlink(missing_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
        else:
            path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
