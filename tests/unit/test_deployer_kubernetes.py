"""The k8s substrate at the kubernetes-client boundary: a recording ApiClient stands in for the
API server, and the test asserts the exact requests (server-side apply, restart patch, pod logs,
config read back and restored by a rollback)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from kubernetes.client import ApiClient, Configuration

from services.deployer.adapters.kubernetes import KubernetesSubstrate
from services.deployer.ports import restored_inputs
from services.deployer.release import run_release
from services.deployer.scaffold import scaffold_inputs
from shared.config.sections import VerifyConfig
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


class TextResponse:
    def __init__(self, status, text):
        self.status, self.data = status, text.encode()

    def read(self):
        return self.data


class PodsApiClient(RecordingApiClient):
    """Also serves pod lists (JSON) and pod logs (text/plain, like the API server)."""

    def __init__(self, objects=None, logs=None):
        super().__init__(objects)
        self.logs = logs or {}

    def call_api(self, method, url, header_params=None, body=None, post_params=None, _request_timeout=None):
        path = url.removeprefix(self.configuration.host)
        if "/log?" in path:
            self.requests.append((method, path, header_params, None))
            found = self.logs.get(path.split("?")[0])
            return TextResponse(200, found) if found is not None else TextResponse(404, "not found")
        return super().call_api(method, url, header_params, body, post_params, _request_timeout)


def _pod(name, *, ready=True, restarts=0, waiting=False, phase="Running"):
    state = {"waiting": {"reason": "CrashLoopBackOff"}} if waiting else {"running": {}}
    return {
        "metadata": {"name": name},
        "status": {
            "phase": phase,
            "containerStatuses": [
                {"name": "webhook", "ready": ready, "restartCount": restarts, "state": state}
            ],
        },
    }


PODS = "/api/v1/namespaces/shop-staging/pods"


def test_logs_of_the_failing_pods_only_with_the_crashed_run_of_a_crash_looping_one():
    inputs = scaffold_inputs(shop_config(), "shop", config_path="shop.yaml", env={})
    api = PodsApiClient(
        {PODS: {"items": [_pod("webhook-b", restarts=3, waiting=True, ready=False), _pod("webhook-a")]}},
        logs={f"{PODS}/webhook-b/log": "starting\nTraceback: boom\nBearer abcdefghijklmnop\n"},
    )
    substrate = KubernetesSubstrate(api, lambda d, p: KEYS)
    lines = substrate.logs(inputs.topology, inputs.topology.service("webhook"), 50)
    listed = api.requests[0][1]
    assert listed == (
        f"{PODS}?labelSelector=app.kubernetes.io%2Fname%3Dwebhook%2Capp.kubernetes.io%2Finstance%3Dshop"
    )
    log_requests = [r for r in api.requests if "/log?" in r[1]]
    assert [r[1] for r in log_requests] == [
        f"{PODS}/webhook-b/log?container=webhook&tailLines=50&previous=true"
    ]  # webhook-a is ready and never restarted: not asked
    assert log_requests[0][2]["Accept"] == "text/plain"
    assert log_requests[0][2]["authorization"] == "Bearer tok"
    assert lines == [
        "webhook-b (previous run): starting",
        "webhook-b (previous run): Traceback: boom",
        "webhook-b (previous run): Bearer ***",  # redacted like every log line Kiln keeps
    ]


def test_all_pods_are_asked_when_none_looks_failing_and_missing_logs_are_said():
    inputs = scaffold_inputs(shop_config(), "shop", config_path="shop.yaml", env={})
    api = PodsApiClient(
        {PODS: {"items": [_pod("webhook-a"), _pod("webhook-b")]}},
        logs={f"{PODS}/webhook-a/log": "\n".join(f"line {i}" for i in range(80))},
    )
    lines = KubernetesSubstrate(api, lambda d, p: KEYS).logs(
        inputs.topology, inputs.topology.service("webhook"), 50
    )
    assert [r[1] for r in api.requests if "/log?" in r[1]] == [
        f"{PODS}/webhook-a/log?container=webhook&tailLines=50",
        f"{PODS}/webhook-b/log?container=webhook&tailLines=50",
    ]
    assert lines[0] == "webhook-a: line 30" and lines[49] == "webhook-a: line 79"
    assert lines[50] == "webhook-b: (pod gone)"


def test_verify_failure_on_k8s_carries_the_pod_logs_into_the_event():
    deployments = "/apis/apps/v1/namespaces/shop-staging/deployments"
    annotations = {"kiln.dev/revision": "1", "kiln.dev/images": '{"webhook": "good", "worker": "good"}'}
    api = PodsApiClient(
        {
            deployments: {"items": [{"metadata": {"annotations": annotations}}]},
            PODS: {"items": [_pod("webhook-x", ready=False)]},
        },
        logs={f"{PODS}/webhook-x/log": "ModuleNotFoundError: No module named 'webhook'"},
    )

    class Probe:
        def get(self, url, timeout_s):
            return (503, "down") if "webhook" in url else (200, "ok")

    inputs = scaffold_inputs(
        shop_config(), "shop", config_path="shop.yaml", env={}, images={"webhook": "bad"}
    )
    substrate = KubernetesSubstrate(api, lambda d, p: KEYS, now=lambda: NOW)
    outcome = run_release(inputs, substrate, Probe(), VerifyConfig(retries=1, delay_s=0), lambda s: None)
    assert not outcome.healthy
    assert "[webhook] webhook-x: ModuleNotFoundError: No module named 'webhook'" in outcome.log_tail


def test_current_release_carries_its_configmap_and_rollback_restores_it():
    configmap_path = "/api/v1/namespaces/shop-staging/configmaps/shop-config"
    deployments = "/apis/apps/v1/namespaces/shop-staging/deployments"
    old_config = '{"old": true}\n'
    annotations = {"kiln.dev/revision": "4", "kiln.dev/images": '{"webhook": "w:1", "worker": "k:1"}'}
    api = RecordingApiClient(
        {
            deployments: {"items": [{"metadata": {"annotations": annotations}}]},
            configmap_path: {"data": {"config.json": old_config}},
        }
    )
    inputs = scaffold_inputs(shop_config(), "shop", config_path="shop.yaml", env={})
    substrate = KubernetesSubstrate(api, lambda d, p: KEYS, now=lambda: NOW)
    previous = substrate.current(inputs.topology)
    assert previous.revision == 4 and previous.config_json == old_config
    api.requests.clear()
    # The API server still holds the failed release's config, so the old one is a change: restart.
    api.objects[configmap_path] = {"data": {"config.json": inputs.config_json}}
    detail = substrate.rollback(restored_inputs(inputs, previous), previous)
    applied = next(r[3] for r in api.requests if r[0] == "PATCH" and r[1].startswith(configmap_path))
    assert applied["data"]["config.json"] == old_config
    deployment = next(
        r[3] for r in api.requests if r[0] == "PATCH" and r[1].startswith(f"{deployments}/webhook?")
    )
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "w:1"
    assert deployment["metadata"]["annotations"]["kiln.dev/revision"] == "4"
    assert detail["restarted"] == ["webhook", "worker"]
