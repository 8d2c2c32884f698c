"""Findings 10 (Helm escaping), 12 and 5 (chart half), rendered by Helm's own Go library
(helm-python-sdk) and validated against the Kubernetes schemas.

The attack: an ImagePushed.repository and a config env value carrying Helm template syntax
(`{{ lookup "v1" "Secret" "" "" }}` would make Helm read every Secret of the cluster). The
rendered manifests must carry the text literally. Then: generated Deployments are confined, and
Kiln's own chart gives each service only its own secrets and API rights."""

from __future__ import annotations

from pathlib import Path

import helm_python as helm
import kubernetes_validate
import yaml

from services.deployer.scaffold import chart_manifests, render_scaffold, scaffold_inputs, write_scaffold
from shared.config import parse_config
from tests.unit.deployer_fixtures import CONFIG_TEXT

KUBERNETES_VERSION = "1.29.0"
KILN_CHART = Path(__file__).resolve().parents[2] / "charts" / "kiln"
HOSTILE = '{{ lookup "v1" "Secret" "" "" }}'
HOSTILE_ENV = "`{{ .Release.Namespace }}` }} {{- /* x */ -}} {{{{"
PEMS = {"privatePem": "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n", "publicPem": "pub\n"}


def _hostile_inputs():
    config = parse_config(
        CONFIG_TEXT.replace("LOG_LEVEL: debug", f"LOG_LEVEL: {HOSTILE_ENV!r}"), {}, source_name="shop.yaml"
    )
    images = {"webhook": f"registry.example.com:5000/kiln/web:{HOSTILE}"}
    return scaffold_inputs(config, "shop", config_path="shop.yaml", env={}, images=images)


def _render_generated_chart(tmp_path: Path) -> list[dict]:
    write_scaffold(render_scaffold(_hostile_inputs()), tmp_path)
    with helm.Chart.load(tmp_path / "chart") as chart:
        rendered = chart.render({"keys": PEMS}, name="shop", namespace="shop-staging", is_install=True)
    return [doc for text in rendered.values() for doc in yaml.safe_load_all(text) if doc]


def _by_name(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_hostile_image_and_env_values_come_out_of_helm_literally(tmp_path):
    docs = _render_generated_chart(tmp_path)
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    webhook = _by_name(docs, "Deployment")["webhook"]["spec"]["template"]["spec"]["containers"][0]
    assert webhook["image"] == f"registry.example.com:5000/kiln/web:{HOSTILE}"
    assert {"name": "LOG_LEVEL", "value": HOSTILE_ENV} in webhook["env"]
    assert HOSTILE_ENV in _by_name(docs, "ConfigMap")["shop-config"]["data"]["config.json"]
    # Kiln's own Helm action still runs: the keys come from --set-file values, base64-encoded.
    secret = _by_name(docs, "Secret")["shop-keys"]
    assert secret["data"]["shop_private.pem"] and "required" not in secret["data"]["shop_private.pem"]


def test_the_apply_installer_gets_the_same_literal_values_without_helm_escapes():
    """No Helm between Kiln and the cluster on this path: the text must arrive unescaped."""
    docs = chart_manifests(_hostile_inputs(), (PEMS["privatePem"].encode(), PEMS["publicPem"].encode()))
    webhook = _by_name(docs, "Deployment")["webhook"]["spec"]["template"]["spec"]["containers"][0]
    assert webhook["image"] == f"registry.example.com:5000/kiln/web:{HOSTILE}"
    assert {"name": "LOG_LEVEL", "value": HOSTILE_ENV} in webhook["env"]


def test_generated_deployments_are_confined_with_limits(tmp_path):
    for name, deployment in _by_name(_render_generated_chart(tmp_path), "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 65532
        assert pod["securityContext"]["fsGroup"] == 65532
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        container = pod["containers"][0]
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
        }, name
        assert container["resources"]["limits"] == {"cpu": "1000m", "memory": "512Mi"}
        keys = next(v for v in pod["volumes"] if v["name"] == "keys")
        assert keys["secret"]["secretName"] == "shop-keys"  # this package's Secret only


def _render_kiln(values: dict | None = None) -> list[dict]:
    merged = {"secrets": {"values": {"KILN_AMQP_URL": "amqp://x", "KILN_DATABASE_URL": "mysql://x"}}}
    merged["brokerUsers"] = {"perService": False}  # per-service broker URLs: tests/unit/test_kiln_chart.py
    merged.update(values or {})
    rendered = helm.Chart.load(KILN_CHART).render(
        merged, name="kiln", namespace="kiln-system", is_install=True
    )
    return [doc for text in rendered.values() for doc in yaml.safe_load_all(text) if doc]


def test_kiln_pods_get_only_their_own_secret_keys_and_api_rights():
    docs = _render_kiln({"deployer": {"namespaces": ["demo-dev"]}})
    env_of = {}
    for name, deployment in _by_name(docs, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert all("secretRef" not in source for source in container.get("envFrom", [])), name
        env_of[name] = {e["name"] for e in container["env"] if "valueFrom" in e}
        assert pod["serviceAccountName"] == name.removesuffix("-amd64").removesuffix("-arm64")
        assert pod["automountServiceAccountToken"] is (name == "kiln-deployer"), name
    assert (
        "KILN_GIT_TOKEN" not in env_of["kiln-scanner"] | env_of["kiln-gateway"] | env_of["kiln-imager-amd64"]
    )
    assert "KILN_GITHUB_SECRET" not in env_of["kiln-scanner"] | env_of["kiln-compiler"]
    assert "KILN_REGISTRY_PASSWORD" not in env_of["kiln-gateway"] | env_of["kiln-reporter"]
    bindings = [d for d in docs if d["kind"] in ("RoleBinding", "ClusterRoleBinding")]
    assert [(b["kind"], b["metadata"].get("namespace"), b["subjects"][0]["name"]) for b in bindings] == [
        ("RoleBinding", "demo-dev", "kiln-deployer")
    ]


def test_kiln_chart_defaults_grant_no_cluster_role_and_no_privileged_pod():
    docs = _render_kiln()
    assert not [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")]
    for name, deployment in _by_name(docs, "Deployment").items():
        context = deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]
        assert not context.get("privileged"), name
        assert context["allowPrivilegeEscalation"] is False and context["capabilities"]["drop"] == ["ALL"]
        if "imager" in name:  # buildah's minimum, measured (docs/operations.md "Image workers")
            # build: unpack layers, chroot copier, rootful mode; proof: switch to USER 65532
            build = ["CHOWN", "DAC_OVERRIDE", "MKNOD", "SYS_CHROOT", "SYS_ADMIN"]
            assert context["capabilities"]["add"] == [*build, "SETUID", "SETGID"]
        else:
            assert "add" not in context["capabilities"]
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
