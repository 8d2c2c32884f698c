"""The k8s substrate: server-side apply of the chart's manifests through the kubernetes client,
and a rolling restart of every workload mounting the ConfigMap when its data changed.

Why the restart when the pod template already carries the config checksum: a ConfigMap mounted
with subPath never updates inside a running pod, and workloads applied by older scaffolds (or by
hand) have no checksum. Patching `kubectl.kubernetes.io/restartedAt` is what `kubectl rollout
restart` does, so the pods are replaced whatever else their template says.

A rollback re-applies the previous images with the previous ConfigMap data (read before the new
release was applied), so the restart above also brings a config-only change back.

The app's own config is a second ConfigMap (`<package>-app-config`, a file per reading service),
mounted with subPath too; the pod templates of its readers carry the checksum of their own file,
so a change of one section rolls the pods of the services that read it and no others. The app
secrets are a Secret built in memory (`<package>-app-secrets`) from the deployer's environment.

Requests go through `ApiClient.call_api` only, which keeps this adapter testable at the client
boundary (tests record the exact requests) without an API server.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from services.deployer.ports import Release
from services.deployer.scaffold import ScaffoldInputs, chart_manifests
from services.deployer.scaffold.render import app_config_key
from services.deployer.topology import ServicePlan, Topology
from shared.bus import TransientError
from shared.logging import REDACT
from shared.naming import safe_name

FIELD_MANAGER = "kiln-deployer"
CONFIG_KEY = "config.json"  # the ConfigMap's data key (templates/configmap.yaml)
MAX_LOGGED_PODS = 3  # per failing service: enough to see the failure, not a whole ReplicaSet
RESTART_ANNOTATION = "kubectl.kubernetes.io/restartedAt"
REVISION_ANNOTATION = "kiln.dev/revision"
IMAGE_ANNOTATION = "kiln.dev/images"
_PLURALS = {
    "Namespace": "namespaces",
    "ConfigMap": "configmaps",
    "Secret": "secrets",
    "Service": "services",
    "PersistentVolumeClaim": "persistentvolumeclaims",
    "Deployment": "deployments",
    "StatefulSet": "statefulsets",
}


def object_path(doc: dict[str, Any]) -> str:
    api_version, kind = doc["apiVersion"], doc["kind"]
    prefix = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    name = doc["metadata"]["name"]
    if kind == "Namespace":
        return f"{prefix}/namespaces/{name}"
    return f"{prefix}/namespaces/{doc['metadata']['namespace']}/{_PLURALS[kind]}/{name}"


class KubernetesSubstrate:
    name = "k8s"

    def __init__(
        self,
        api_client: Any,
        keys: Callable[[str, str], tuple[bytes, bytes]],
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self._api = api_client
        self._keys = keys
        self._now = now

    # -- the requests ------------------------------------------------------------------------

    def _call(
        self, method: str, path: str, *, body: Any = None, content_type: str | None = None, text=False
    ) -> Any:
        headers = {"Accept": "text/plain" if text else "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        auth = self._api.configuration.auth_settings().get("BearerToken")
        if auth and auth.get("value"):
            headers[auth["key"]] = auth["value"]
        url = self._api.configuration.host + path
        try:
            response = self._api.call_api(
                method, url, header_params=headers, body=None if body is None else json.dumps(body)
            )
            response.read()
        except Exception as exc:  # urllib3 errors: the cluster is unreachable, worth retrying
            raise TransientError(f"kubernetes API at {self._api.configuration.host}: {exc}") from exc
        if response.status == 404:
            return None
        if response.status >= 400:
            raise TransientError(f"{method} {path}: HTTP {response.status}: {response.data[:500]!r}")
        if text:
            return response.data.decode("utf-8", "replace")
        return json.loads(response.data) if response.data else {}

    def _apply(self, doc: dict[str, Any]) -> None:
        path = f"{object_path(doc)}?fieldManager={FIELD_MANAGER}&force=true"
        self._call("PATCH", path, body=doc, content_type="application/apply-patch+yaml")

    # -- the port ------------------------------------------------------------------------------

    def apply(self, inputs: ScaffoldInputs, revision: int) -> dict[str, Any]:
        topology = inputs.topology
        docs = chart_manifests(inputs, self._keys(inputs.keys_dir, topology.package))
        configmap = next(
            d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == _config_name(topology)
        )
        before = self._call("GET", object_path(configmap))
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": topology.namespace}}
        for doc in [namespace, *docs]:
            if doc["kind"] in ("Deployment", "StatefulSet"):
                svc = next(s for s in topology.services if s.dns_name == doc["metadata"]["name"])
                images = {svc.name: inputs.images[svc.name]}
                doc["metadata"].setdefault("annotations", {}).update(
                    {REVISION_ANNOTATION: str(revision), IMAGE_ANNOTATION: json.dumps(images)}
                )
            self._apply(doc)
        restarted: list[str] = []
        if before is not None and before.get("data") != configmap["data"]:
            restarted = self._restart_mounting(docs, configmap["metadata"]["name"])
        return {"namespace": topology.namespace, "applied": len(docs) + 1, "restarted": restarted}

    def _restart_mounting(self, docs: list[dict[str, Any]], configmap: str) -> list[str]:
        stamp = self._now().strftime("%Y-%m-%dT%H:%M:%SZ")
        restarted = []
        for doc in docs:
            if doc["kind"] not in ("Deployment", "StatefulSet"):
                continue
            volumes = doc["spec"]["template"]["spec"].get("volumes", [])
            if not any(v.get("configMap", {}).get("name") == configmap for v in volumes):
                continue
            patch = {"spec": {"template": {"metadata": {"annotations": {RESTART_ANNOTATION: stamp}}}}}
            self._call(
                "PATCH", object_path(doc), body=patch, content_type="application/strategic-merge-patch+json"
            )
            restarted.append(doc["metadata"]["name"])
        return restarted

    def rollback(self, restored: ScaffoldInputs, previous: Release) -> dict[str, Any]:
        # The ConfigMap goes back to the previous data, so its mounting workloads restart again.
        return self.apply(restored, previous.revision)

    def current(self, topology: Topology) -> Release | None:
        path = (
            f"/apis/apps/v1/namespaces/{topology.namespace}/deployments"
            f"?labelSelector=app.kubernetes.io/instance%3D{safe_name(topology.package)}"
        )
        found = self._call("GET", path) or {}
        images: dict[str, str] = {}
        revision = 0
        for item in found.get("items", []):
            annotations = item["metadata"].get("annotations", {})
            revision = max(revision, int(annotations.get(REVISION_ANNOTATION, 0)))
            images.update(json.loads(annotations.get(IMAGE_ANNOTATION, "{}")))
        if not revision:
            return None
        configmaps = f"/api/v1/namespaces/{topology.namespace}/configmaps"
        configmap = self._call("GET", f"{configmaps}/{_config_name(topology)}")
        config_json = ((configmap or {}).get("data") or {}).get(CONFIG_KEY)
        app_configmap = self._call("GET", f"{configmaps}/{safe_name(topology.package)}-app-config")
        app_configs = app_configs_of((app_configmap or {}).get("data") or {}, topology)
        return Release(topology.package, revision, images, config_json, app_configs)

    def endpoint(self, topology: Topology, service: ServicePlan) -> str | None:
        # Cluster DNS: the verifier runs inside the cluster (charts/kiln deploys the deployer there).
        return f"http://{service.dns_name}.{topology.namespace}.svc:{service.port}" if service.port else None

    def running(self, topology: Topology, service: ServicePlan) -> tuple[bool, str]:
        kind = "statefulsets" if service.kind == "infra" else "deployments"
        doc = self._call("GET", f"/apis/apps/v1/namespaces/{topology.namespace}/{kind}/{service.dns_name}")
        ready = (doc or {}).get("status", {}).get("readyReplicas", 0)
        return ready >= service.replicas, f"{ready}/{service.replicas} ready"

    def logs(self, topology: Topology, service: ServicePlan, lines: int = 50) -> list[str]:
        """The last `lines` of each failing pod of the service (all of its pods if none looks
        failing, e.g. a failed self-check), as `read_namespaced_pod_log(tail_lines=…)` requests
        them; a crash-looping container's previous run, whose log says why it died."""
        selector = urlencode(
            {
                "labelSelector": f"app.kubernetes.io/name={service.dns_name},"
                f"app.kubernetes.io/instance={safe_name(topology.package)}"
            }
        )
        try:
            found = self._call("GET", f"/api/v1/namespaces/{topology.namespace}/pods?{selector}") or {}
        except TransientError as exc:
            return [f"(pods not listed: {exc})"]
        pods = sorted(found.get("items", []), key=lambda pod: pod["metadata"]["name"])
        failing = [pod for pod in pods if _pod_failing(pod)] or pods
        out: list[str] = []
        for pod in failing[:MAX_LOGGED_PODS]:
            out += self._pod_log(topology.namespace, pod, service.dns_name, lines)
        return out

    def _pod_log(self, namespace: str, pod: dict[str, Any], container: str, lines: int) -> list[str]:
        name = pod["metadata"]["name"]
        status = next(
            (s for s in pod.get("status", {}).get("containerStatuses", []) if s.get("name") == container), {}
        )
        # Waiting to restart after a crash: the current container has no log yet, the last one does.
        previous = bool(status.get("restartCount")) and "waiting" in status.get("state", {})
        query = {"container": container, "tailLines": lines, **({"previous": "true"} if previous else {})}
        path = f"/api/v1/namespaces/{namespace}/pods/{quote(name)}/log?{urlencode(query)}"
        try:
            text = self._call("GET", path, text=True)
        except TransientError as exc:
            return [f"{name}: (no log: {exc})"]
        if text is None:
            return [f"{name}: (pod gone)"]
        label = f"{name} (previous run)" if previous else name
        return [f"{label}: {REDACT(line)}" for line in text.splitlines()[-lines:]]


def _config_name(topology: Topology) -> str:
    return f"{safe_name(topology.package)}-config"


def app_configs_of(data: dict[str, str], topology: Topology) -> dict[str, str]:
    """service -> its file, from the app-config ConfigMap's data (keys `<service dns name>.json`)."""
    return {svc.name: data[app_config_key(svc)] for svc in topology.apps if app_config_key(svc) in data}


def _pod_failing(pod: dict[str, Any]) -> bool:
    status = pod.get("status", {})
    if status.get("phase") != "Running":
        return True
    return any(
        not s.get("ready") or s.get("restartCount", 0) > 0 for s in status.get("containerStatuses", [])
    )
