"""The k8s substrate through Helm, chosen when a `helm` binary is on PATH (or forced with
KILN_DEPLOYER_K8S_INSTALLER=helm): `helm upgrade --install` of the generated chart, `helm history`
and `helm get manifest` to read back what runs, `helm rollback` to undo a failed release. Health,
state and pod logs are read through the kubernetes client, as on the server-side-apply path.

Why this is enough for "config changes must reach the pods": every pod template carries the
config checksum, so a release whose ConfigMap changed rolls its pods, and `helm rollback` restores
the previous revision whole (images, ConfigMap and checksum), so its pods roll back too.

The PEM keys and the app secrets reach Helm only as `--set-file` paths: files of mode 0600 in a
private temporary directory (0700) that is removed when the call returns. Their values are never
an argument (arguments are visible in `ps` and in Helm's error messages) and never written into
the chart.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from services.deployer.adapters.kubernetes import CONFIG_KEY, KubernetesSubstrate, app_configs_of
from services.deployer.ports import Release, ReleaseFailed
from services.deployer.scaffold import ScaffoldInputs, render_scaffold
from services.deployer.topology import ServicePlan, Topology
from shared.bus import PermanentError, TransientError
from shared.logging import REDACT
from shared.naming import safe_name

# Helm says these when the cluster, not the release, is the problem: worth retrying later.
_UNREACHABLE = (
    "kubernetes cluster unreachable",
    "connection refused",
    "no such host",
    "i/o timeout",
    "tls handshake timeout",
    "another operation (install/upgrade/rollback) is in progress",
)
_MESSAGE_LINES = 10
HISTORY_MAX = 20

Runner = Callable[..., subprocess.CompletedProcess]


class HelmSubstrate:
    name = "k8s"

    def __init__(
        self,
        cluster: KubernetesSubstrate,
        keys: Callable[[str, str], tuple[bytes, bytes]],
        *,
        helm: str = "helm",
        timeout_s: int = 300,
        kubeconfig: str | None = None,
        run: Runner = subprocess.run,
    ):
        self._cluster = cluster
        self._keys = keys
        self._helm_binary = helm
        self._timeout_s = timeout_s
        self._kubeconfig = kubeconfig
        self._run = run

    @staticmethod
    def release_name(topology: Topology) -> str:
        return safe_name(topology.package)

    # -- the port --------------------------------------------------------------------------------

    def apply(self, inputs: ScaffoldInputs, revision: int) -> dict[str, Any]:
        topology = inputs.topology
        release = self.release_name(topology)
        where = {"installer": "helm", "release": release, "namespace": topology.namespace}
        with tempfile.TemporaryDirectory(prefix="kiln-helm-") as work:
            chart = _write_chart(inputs, Path(work))
            private, public = self._keys(inputs.keys_dir, topology.package)
            args = [
                "upgrade",
                "--install",
                release,
                str(chart),
                "--namespace",
                topology.namespace,
                "--create-namespace",
                "--wait",
                "--timeout",
                f"{self._timeout_s}s",
                "--set-file",
                f"keys.privatePem={_private_file(Path(work) / 'private.pem', private)}",
                "--set-file",
                f"keys.publicPem={_private_file(Path(work) / 'public.pem', public)}",
                *_app_secret_files(inputs, Path(work)),
                "--description",
                f"kiln revision {revision}",
                "--output",
                "json",
            ]
            done = self._helm(args)
        if done.returncode != 0:
            raise ReleaseFailed(f"helm upgrade --install {release} failed: {self._message(done)}", where)
        installed = json.loads(done.stdout)
        return {**where, "revision": int(installed["version"]), "status": installed["info"]["status"]}

    def rollback(self, restored: ScaffoldInputs, previous: Release) -> dict[str, Any]:
        topology = restored.topology
        release = self.release_name(topology)
        where = {"installer": "helm", "release": release, "namespace": topology.namespace}
        done = self._helm(
            [
                "rollback",
                release,
                str(previous.revision),
                "--namespace",
                topology.namespace,
                "--wait",
                "--timeout",
                f"{self._timeout_s}s",
            ]
        )
        if done.returncode != 0:
            raise ReleaseFailed(
                f"helm rollback {release} {previous.revision} failed: {self._message(done)}", where
            )
        return {**where, "helm_rollback_to": previous.revision}

    def current(self, topology: Topology) -> Release | None:
        """The last *deployed* revision (a failed one is never what runs), read back from Helm:
        its images from the workloads of its manifest, its config from its ConfigMap."""
        release = self.release_name(topology)
        ns = ["--namespace", topology.namespace]
        done = self._helm(["history", release, *ns, "--max", str(HISTORY_MAX), "--output", "json"])
        if done.returncode != 0:
            message = self._message(done)
            if "not found" in message.lower():
                return None  # first install
            raise TransientError(f"helm history {release}: {message}")
        deployed = [h["revision"] for h in json.loads(done.stdout or "[]") if h.get("status") == "deployed"]
        if not deployed:
            return None
        revision = max(deployed)
        done = self._helm(["get", "manifest", release, *ns, "--revision", str(revision)])
        if done.returncode != 0:
            raise TransientError(f"helm get manifest {release} --revision {revision}: {self._message(done)}")
        images, config_json, app_configs = _read_manifest(done.stdout, topology)
        return Release(topology.package, revision, images, config_json, app_configs)

    def endpoint(self, topology: Topology, service: ServicePlan) -> str | None:
        return self._cluster.endpoint(topology, service)

    def running(self, topology: Topology, service: ServicePlan) -> tuple[bool, str]:
        return self._cluster.running(topology, service)

    def logs(self, topology: Topology, service: ServicePlan, lines: int = 50) -> list[str]:
        return self._cluster.logs(topology, service, lines)

    # -- internals -------------------------------------------------------------------------------

    def _helm(self, args: list[str]) -> subprocess.CompletedProcess:
        command = [self._helm_binary, *args]
        if self._kubeconfig:
            command += ["--kubeconfig", self._kubeconfig]
        try:
            # Helm's own --timeout bounds the waits; this one only catches a hung process.
            return self._run(
                command, capture_output=True, text=True, timeout=self._timeout_s + 60, check=False
            )
        except subprocess.TimeoutExpired:
            raise ReleaseFailed(f"helm {args[0]} did not return within {self._timeout_s + 60}s") from None
        except OSError as exc:
            raise PermanentError(
                f"cannot run helm ({self._helm_binary}): {exc}; install it or set "
                "KILN_DEPLOYER_K8S_INSTALLER=apply"
            ) from None

    @staticmethod
    def _message(done: subprocess.CompletedProcess) -> str:
        lines = (done.stderr or done.stdout or "").strip().splitlines()[-_MESSAGE_LINES:]
        message = REDACT("\n".join(lines)) or f"exit {done.returncode}, no message"
        if any(marker in message.lower() for marker in _UNREACHABLE):
            raise TransientError(f"helm: {message}")
        return message


def _write_chart(inputs: ScaffoldInputs, work: Path) -> Path:
    """The scaffold's chart/ (templates/secret.yaml stays a Helm template fed by --set-file)."""
    for relative, text in render_scaffold(inputs).items():
        if relative.startswith("chart/"):
            path = work / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    return work / "chart"


def _app_secret_files(inputs: ScaffoldInputs, work: Path) -> list[str]:
    args = []
    for index, name in enumerate(sorted(inputs.secret_sources)):
        path = _private_file(work / f"app-secret-{index}", inputs.secret_values[name].encode())
        args += ["--set-file", f"appSecrets.{name}={path}"]
    return args


def _private_file(path: Path, data: bytes) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return path


def _read_manifest(
    manifest: str, topology: Topology
) -> tuple[dict[str, str], str | None, dict[str, str] | None]:
    by_dns = {svc.dns_name: svc.name for svc in topology.services}
    images: dict[str, str] = {}
    config_json = None
    app_configs: dict[str, str] | None = None
    for doc in yaml.safe_load_all(manifest):
        if not doc:
            continue
        kind, name = doc.get("kind"), doc.get("metadata", {}).get("name")
        if kind in ("Deployment", "StatefulSet") and name in by_dns:
            containers = doc["spec"]["template"]["spec"]["containers"]
            images[by_dns[name]] = containers[0]["image"]
        elif kind == "ConfigMap" and name == f"{safe_name(topology.package)}-config":
            config_json = (doc.get("data") or {}).get(CONFIG_KEY)
        elif kind == "ConfigMap" and name == f"{safe_name(topology.package)}-app-config":
            app_configs = app_configs_of(doc.get("data") or {}, topology)
    return images, config_json, app_configs
