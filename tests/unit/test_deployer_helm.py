"""The helm path of the k8s substrate at its boundary: a fake `helm` executable on PATH records its
argv (and the --set-file files as it found them), answers with scripted JSON, and renders the
chart it was given with Helm's Go SDK (helm-python-sdk, client-side) the way `helm upgrade` would.
A unit test of our own logic: no Helm binary and no cluster can run here (docs/deployer.md)."""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path

import pytest
import yaml

from services.deployer.adapters.helm import HelmSubstrate
from services.deployer.adapters.kubernetes import KubernetesSubstrate
from services.deployer.bootstrap import _make_substrate, helm_binary
from services.deployer.ports import Release, ReleaseFailed, restored_inputs
from services.deployer.release import run_release
from services.deployer.scaffold import scaffold_inputs
from services.deployer.settings import DeployerSettings
from shared.bus import PermanentError, TransientError
from shared.config.sections import VerifyConfig
from tests.unit.deployer_fixtures import shop_config
from tests.unit.test_deployer_kubernetes import RecordingApiClient

PRIVATE = b"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"
PUBLIC = b"-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A\n-----END PUBLIC KEY-----\n"

FAKE_HELM = """#!{python}
import json, os, stat, sys
argv = sys.argv[1:]
log, script = os.environ["FAKE_HELM_LOG"], os.environ["FAKE_HELM_SCRIPT"]
entry = {{"argv": argv, "files": {{}}}}
for i, arg in enumerate(argv):
    if arg == "--set-file":
        key, _, path = argv[i + 1].partition("=")
        entry["files"][key] = {{
            "path": path,
            "mode": oct(stat.S_IMODE(os.stat(path).st_mode)),
            "dir_mode": oct(stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode)),
        }}
if argv[0] == "upgrade":
    import helm_python
    values = {{"keys": {{}}, "appSecrets": {{}}}}
    for key, seen in entry["files"].items():
        group, _, name = key.partition(".")
        values[group][name] = open(seen["path"]).read()
    with helm_python.Chart.load(argv[3]) as chart:
        rendered = chart.render(values, name=argv[2], namespace=argv[argv.index("--namespace") + 1])
    for kind in ("secret", "app-secret", "app-configmap"):
        found = [text for name, text in rendered.items() if name.endswith(f"/{{kind}}.yaml")]
        entry[kind] = found[0] if found else None
with open(log) as handle:
    seen_before = sum(1 for line in handle if json.loads(line)["argv"][0] == argv[0])
with open(log, "a") as handle:
    handle.write(json.dumps(entry) + "\\n")
answers = json.load(open(script)).get(argv[0], [])
answer = answers[min(seen_before, len(answers) - 1)] if answers else {{"rc": 0}}
sys.stdout.write(answer.get("stdout", ""))
sys.stderr.write(answer.get("stderr", ""))
sys.exit(answer.get("rc", 0))
"""

# Deployed references are pinned by digest (the deployer refuses anything else).
WEBHOOK_R2 = "reg/webhook@sha256:" + "2" * 64
WEBHOOK_R3 = "reg/webhook@sha256:" + "3" * 64
MANIFEST_R2 = """---
# Source: shop/templates/configmap.yaml
apiVersion: v1
kind: ConfigMap
metadata: {name: shop-config, namespace: shop-staging}
data:
  config.json: |
    {"release": 2}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: webhook, namespace: shop-staging}
spec:
  template:
    spec:
      containers: [{name: webhook, image: "WEBHOOK_R2"}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: redis, namespace: shop-staging}
spec:
  template:
    spec:
      containers: [{name: redis, image: "redis:7"}]
""".replace("WEBHOOK_R2", WEBHOOK_R2)

NOT_FOUND = {"rc": 1, "stderr": "Error: release: not found\n"}


def _history(*entries):
    return {"stdout": json.dumps([{"revision": r, "status": s, "chart": "shop-0.1.0"} for r, s in entries])}


def _installed(version, status="deployed"):
    return {"stdout": json.dumps({"name": "shop", "version": version, "info": {"status": status}})}


class FakeHelm:
    def __init__(self, directory: Path, monkeypatch):
        self.path = directory / "helm"
        self.path.write_text(FAKE_HELM.format(python=sys.executable))
        self.path.chmod(0o755)
        self.log = directory / "helm.log"
        self.log.write_text("")
        self.script = directory / "script.json"
        monkeypatch.setenv("FAKE_HELM_LOG", str(self.log))
        monkeypatch.setenv("FAKE_HELM_SCRIPT", str(self.script))
        monkeypatch.setenv("PATH", f"{directory}{os.pathsep}{os.environ['PATH']}")

    def answer(self, **answers):
        self.script.write_text(json.dumps(answers))

    def calls(self):
        return [json.loads(line) for line in self.log.read_text().splitlines()]


@pytest.fixture
def helm(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    return FakeHelm(bin_dir, monkeypatch)


def _substrate(helm, api=None, **kwargs):
    cluster = KubernetesSubstrate(api or RecordingApiClient(), lambda d, p: (PRIVATE, PUBLIC))
    return HelmSubstrate(cluster, lambda d, p: (PRIVATE, PUBLIC), helm=str(helm.path), **kwargs)


def _inputs(env=None, images=None):
    return scaffold_inputs(shop_config(env), "shop", config_path="shop.yaml", env={}, images=images)


def test_first_install_is_helm_upgrade_install_with_the_keys_only_in_private_files(helm):
    helm.answer(history=[NOT_FOUND], upgrade=[_installed(1)])
    substrate = _substrate(helm, timeout_s=120)
    inputs = _inputs()
    assert substrate.current(inputs.topology) is None
    detail = substrate.apply(inputs, revision=1)
    history, upgrade = helm.calls()
    assert history["argv"] == [
        "history",
        "shop",
        "--namespace",
        "shop-staging",
        "--max",
        "20",
        "--output",
        "json",
    ]
    argv = upgrade["argv"]
    chart = Path(argv[3])
    private, public = upgrade["files"]["keys.privatePem"], upgrade["files"]["keys.publicPem"]
    assert argv == [
        "upgrade",
        "--install",
        "shop",
        str(chart),
        "--namespace",
        "shop-staging",
        "--create-namespace",
        "--wait",
        "--timeout",
        "120s",
        "--set-file",
        f"keys.privatePem={private['path']}",
        "--set-file",
        f"keys.publicPem={public['path']}",
        "--description",
        "kiln revision 1",
        "--output",
        "json",
    ]
    # The key material: never an argument; files readable by the owner only, in a private dir ...
    assert not any("BEGIN" in arg or "MIIE" in arg for arg in argv)
    assert private["mode"] == public["mode"] == "0o600" and private["dir_mode"] == "0o700"
    # ... removed with the chart once helm returned.
    assert not Path(private["path"]).exists() and not chart.exists()
    # What Helm rendered from those files is the Secret the pods mount.
    secret = yaml.safe_load(upgrade["secret"])
    assert base64.b64decode(secret["data"]["shop_private.pem"]) == PRIVATE
    assert base64.b64decode(secret["data"]["shop_public.pem"]) == PUBLIC
    assert detail == {
        "installer": "helm",
        "release": "shop",
        "namespace": "shop-staging",
        "revision": 1,
        "status": "deployed",
    }


def test_current_is_the_last_deployed_revision_read_back_from_its_manifest(helm):
    helm.answer(
        history=[_history((1, "superseded"), (2, "deployed"), (3, "failed"))],
        get=[{"stdout": MANIFEST_R2}],
    )
    release = _substrate(helm).current(_inputs().topology)
    assert release == Release("shop", 2, {"webhook": WEBHOOK_R2, "redis": "redis:7"}, '{"release": 2}\n')
    assert helm.calls()[1]["argv"] == [
        "get",
        "manifest",
        "shop",
        "--namespace",
        "shop-staging",
        "--revision",
        "2",
    ]


def test_failed_verify_is_undone_by_helm_rollback_to_the_last_deployed_revision(helm):
    helm.answer(
        history=[_history((1, "superseded"), (2, "deployed"))],
        get=[{"stdout": MANIFEST_R2}],
        upgrade=[_installed(3)],
        rollback=[{"stdout": "Rollback was a success! Happy Helming!\n"}],
    )

    class Down:
        def get(self, url, timeout_s):
            return 503, "down"

    substrate = _substrate(helm, kubeconfig="/etc/kiln/kubeconfig")
    inputs = _inputs({"KILN_FEATURES_REPORTS": "true"}, images={"webhook": WEBHOOK_R3})
    outcome = run_release(inputs, substrate, Down(), VerifyConfig(retries=1, delay_s=0), lambda s: None)
    assert not outcome.healthy
    assert outcome.deployed.revision == 3  # Helm's number, not ours
    rollback = helm.calls()[-1]["argv"]
    assert rollback == [
        "rollback",
        "shop",
        "2",
        "--namespace",
        "shop-staging",
        "--wait",
        "--timeout",
        "300s",
        "--kubeconfig",
        "/etc/kiln/kubeconfig",
    ]
    assert outcome.rollback.revision == 2 and outcome.rollback.detail["helm_rollback_to"] == 2
    # Helm restores revision 2 whole: its ConfigMap differed from the failed one's.
    assert outcome.rollback.detail["config_restored"] is True
    assert dict((i.service, i.reference) for i in outcome.rollback.images)["webhook"] == WEBHOOK_R2


def test_upgrade_that_does_not_come_up_fails_the_release_and_an_unreachable_cluster_is_retried(helm):
    helm.answer(
        upgrade=[
            {"rc": 1, "stderr": "Error: UPGRADE FAILED: context deadline exceeded\n"},
            {
                "rc": 1,
                "stderr": "Error: Kubernetes cluster unreachable: dial tcp 10.0.0.1:6443: i/o timeout\n",
            },
        ]
    )
    substrate = _substrate(helm)
    with pytest.raises(
        ReleaseFailed, match=r"helm upgrade --install shop failed: .*context deadline exceeded"
    ):
        substrate.apply(_inputs(), revision=2)
    with pytest.raises(TransientError, match="Kubernetes cluster unreachable"):
        substrate.apply(_inputs(), revision=2)
    assert all(not Path(c["files"]["keys.privatePem"]["path"]).exists() for c in helm.calls())


def test_rollback_failure_is_reported_not_raised_into_the_worker(helm):
    helm.answer(rollback=[{"rc": 1, "stderr": "Error: release has no 2 version\n"}])
    substrate = _substrate(helm)
    inputs = _inputs()
    previous = Release("shop", 2, {"webhook": "w"}, None)
    with pytest.raises(ReleaseFailed, match="helm rollback shop 2 failed: Error: release has no 2 version"):
        substrate.rollback(restored_inputs(inputs, previous), previous)


KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: t0ken-for-tests}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


def test_helm_is_used_when_found_on_path_and_the_setting_forces_either_way(helm, tmp_path, monkeypatch):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    auto = DeployerSettings(deployer_kubeconfig=str(kubeconfig))
    assert helm_binary(auto) == str(helm.path)
    assert isinstance(_make_substrate("k8s", auto), HelmSubstrate)
    apply = DeployerSettings(deployer_kubeconfig=str(kubeconfig), deployer_k8s_installer="apply")
    assert helm_binary(apply) is None
    assert isinstance(_make_substrate("k8s", apply), KubernetesSubstrate)

    monkeypatch.setenv("PATH", "/nonexistent")
    assert helm_binary(auto) is None  # auto without helm: server-side apply
    forced = DeployerSettings(deployer_kubeconfig=str(kubeconfig), deployer_k8s_installer="helm")
    with pytest.raises(PermanentError, match="KILN_DEPLOYER_K8S_INSTALLER=helm, but no helm binary"):
        helm_binary(forced)
