"""The k8s substrate at the kubernetes-client boundary: a recording ApiClient stands in for the
API server, and the test asserts the exact requests (server-side apply, restart patch)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from kubernetes.client import ApiClient, Configuration

from services.deployer.adapters.kubernetes import KubernetesSubstrate
from services.deployer.scaffold import scaffold_inputs
from tests.unit.deployer_fixtures import shop_config

KEYS = (b"private", b"public")
NOW = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)


class Response:
    def __init__(self, status, body):
        self.status, self.data = status, json.dumps(body).encode() if body is not None else b""

    def read(self):
        return self.data


class RecordingApiClient(ApiClient):
    """Answers GETs from `objects` (404 otherwise) and records every request."""

    def __init__(self, objects=None):
        config = Configuration(host="https://k8s.test:6443")
        config.api_key = {"authorization": "Bearer tok"}
        super().__init__(config)
        self.objects = objects or {}
        self.requests = []

    def call_api(self, method, url, header_params=None, body=None, post_params=None, _request_timeout=None):
        path = url.removeprefix(self.configuration.host)
        self.requests.append((method, path, header_params, json.loads(body) if body else None))
        if method == "GET":
            found = self.objects.get(path.split("?")[0])
            return Response(200, found) if found is not None else Response(404, {"kind": "Status"})
        return Response(200, json.loads(body))


def apply(api, env=None):
    inputs = scaffold_inputs(shop_config(env), "shop", config_path="shop.yaml", env={})
    substrate = KubernetesSubstrate(api, lambda keys_dir, package: KEYS, now=lambda: NOW)
    return inputs, substrate.apply(inputs, revision=3)


def test_first_apply_is_server_side_apply_of_every_object_and_no_restart():
    api = RecordingApiClient()
    _, detail = apply(api)
    patches = [r for r in api.requests if r[0] == "PATCH"]
    assert all(r[2]["Content-Type"] == "application/apply-patch+yaml" for r in patches)
    assert all(r[1].endswith("?fieldManager=kiln-deployer&force=true") for r in patches)
    assert all(r[2]["authorization"] == "Bearer tok" for r in api.requests)
    assert patches[0][1].startswith("/api/v1/namespaces/shop-staging?")
    paths = [r[1].split("?")[0] for r in patches]
    assert "/api/v1/namespaces/shop-staging/configmaps/shop-config" in paths
    assert "/apis/apps/v1/namespaces/shop-staging/deployments/webhook" in paths
    assert "/apis/apps/v1/namespaces/shop-staging/statefulsets/redis" in paths
    deployment = next(
        r[3] for r in patches if r[1].startswith("/apis/apps/v1/namespaces/shop-staging/deployments/webhook")
    )
    assert deployment["metadata"]["annotations"]["kiln.dev/revision"] == "3"
    assert detail["restarted"] == []


def test_unchanged_configmap_restarts_nothing():
    inputs, _ = apply(RecordingApiClient())
    configmap_path = "/api/v1/namespaces/shop-staging/configmaps/shop-config"
    current = {"data": {"config.json": inputs.config_json.rstrip("\n") + "\n"}}
    api = RecordingApiClient({configmap_path: current})
    _, detail = apply(api)
    assert detail["restarted"] == []
    assert not any(r[2].get("Content-Type") == "application/strategic-merge-patch+json" for r in api.requests)


def test_changed_configmap_restarts_every_workload_that_mounts_it():
    configmap_path = "/api/v1/namespaces/shop-staging/configmaps/shop-config"
    api = RecordingApiClient({configmap_path: {"data": {"config.json": "{}"}}})
    _, detail = apply(api, env={"KILN_FEATURES_REPORTS": "true"})
    restarts = [
        r for r in api.requests if r[2].get("Content-Type") == "application/strategic-merge-patch+json"
    ]
    assert [r[1] for r in restarts] == [
        "/apis/apps/v1/namespaces/shop-staging/deployments/reports",
        "/apis/apps/v1/namespaces/shop-staging/deployments/webhook",
        "/apis/apps/v1/namespaces/shop-staging/deployments/worker",
    ]
    expected = {
        "spec": {
            "template": {
                "metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2026-11-21T12:00:00Z"}}
            }
        }
    }
    assert all(r[3] == expected for r in restarts)
    assert detail["restarted"] == ["reports", "webhook", "worker"]
    # the restart comes after the apply of the new ConfigMap, never before
    order = [r[1].split("?")[0] for r in api.requests if r[0] == "PATCH"]
    assert order.index(configmap_path) < order.index(
        "/apis/apps/v1/namespaces/shop-staging/deployments/webhook"
    )


def test_current_release_is_read_back_from_deployment_annotations():
    api = RecordingApiClient(
        {
            "/apis/apps/v1/namespaces/shop-staging/deployments": {
                "items": [
                    {
                        "metadata": {
                            "annotations": {
                                "kiln.dev/revision": "3",
                                "kiln.dev/images": '{"webhook": "r/w@sha256:1"}',
                            }
                        }
                    },
                    {
                        "metadata": {
                            "annotations": {
                                "kiln.dev/revision": "2",
                                "kiln.dev/images": '{"worker": "r/k@sha256:2"}',
                            }
                        }
                    },
                ]
            }
        }
    )
    inputs = scaffold_inputs(shop_config(), "shop", config_path="shop.yaml", env={})
    release = KubernetesSubstrate(api, lambda d, p: KEYS).current(inputs.topology)
    assert release.revision == 3 and release.images == {"webhook": "r/w@sha256:1", "worker": "r/k@sha256:2"}
