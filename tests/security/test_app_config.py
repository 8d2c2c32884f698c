"""The app's own config and secrets (issue #16 item 4), attacked as a pusher would: the pushed
config.yaml tries to give itself secrets or sections, the pushed app config tries to pull an
operator variable (`${KILN_REGISTRY_PASSWORD}` for `docker compose` to expand) or to become a Helm
action that prints a key or a secret into a ConfigMap; and the operator's secret must appear in
no generated file. The chart is rendered by Helm's own Go library (helm-python-sdk) with the values
given at install time; the real-Docker half (the file in the container, the secret in no log,
event or state file) is tests/integration/test_deployer_app_config.py."""

from __future__ import annotations

import base64
import json
import uuid

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from services.deployer.scaffold import render_scaffold, scaffold_inputs, write_scaffold
from shared.config import ConfigError, load_build_config
from tests.unit.app_config_fixtures import app_config, document, write_operator

SECRET = f"pw-{uuid.uuid4().hex}"
PEMS = {
    "privatePem": "-----BEGIN PRIVATE KEY-----\nKEYBYTES\n-----END PRIVATE KEY-----\n",
    "publicPem": "pub\n",
}
HOSTILE = (
    b'database: {host: "${KILN_REGISTRY_PASSWORD}", port: 5432}\n'
    b'mqtt: {broker: "{{ lookup \\"v1\\" \\"Secret\\" \\"\\" \\"\\" }}",'
    b' key: "@@kiln-helm-secret:privatePem@@", pw: "@@kiln-helm-app-secret:DEMO_DATABASE_PASSWORD@@",'
    b' tpl: "{{ .Values.appSecrets.DEMO_DATABASE_PASSWORD }}"}\n'
    b"report: {title: t}\n"
)


@pytest.mark.parametrize(
    ("pushed", "key"),
    [
        (
            "packages: {demo: {app_secrets: {DEMO_DATABASE_PASSWORD: {env: KILN_REGISTRY_PASSWORD}}}}",
            "packages.demo.app_secrets",
        ),
        (
            "packages: {demo: {app_config: {path: app.yaml, env_prefix: DEMO, sections: [local_dev]}}}",
            "packages.demo.app_config",
        ),
        (
            "packages: {demo: {services: {storage-worker: {app_config_sections: [database]}}}}",
            "packages.demo.services.storage-worker.app_config_sections",
        ),
    ],
)
def test_a_pushed_config_yaml_cannot_give_itself_secrets_or_sections(tmp_path, pushed, key):
    operator = write_operator(tmp_path / "operator.yaml")
    with pytest.raises(ConfigError) as refused:
        load_build_config(operator, pushed.encode(), {"KILN_KEYS_DIR": "/tmp/k"})
    errors = dict(refused.value.errors)
    assert errors[key].startswith(
        "operator only: set it in the operator config (the file at KILN_CONFIG_PATH)"
    )


def hostile_inputs(secrets=None):
    cfg = app_config()
    return scaffold_inputs(
        cfg,
        "demo",
        config_path="config.yaml",
        env={},
        app_document=document(cfg, HOSTILE),
        secret_values=secrets,
    )


def test_helm_prints_the_pushed_app_config_as_written_and_no_key_or_secret_into_it(tmp_path):
    write_scaffold(render_scaffold(hostile_inputs()), tmp_path)
    with helm.Chart.load(tmp_path / "chart") as chart:
        rendered = chart.render(
            {"keys": PEMS, "appSecrets": {"DEMO_DATABASE_PASSWORD": SECRET}},
            name="demo",
            namespace="demo-dev",
            is_install=True,
        )
    docs = [doc for text in rendered.values() for doc in yaml.safe_load_all(text) if doc]
    for doc in docs:
        kubernetes_validate.validate(doc, "1.29.0", strict=True)
    configmap = next(d for d in docs if d["metadata"]["name"] == "demo-app-config")
    mounted = json.loads(configmap["data"]["webhook.json"])
    assert mounted["mqtt"] == {
        "broker": '{{ lookup "v1" "Secret" "" "" }}',
        "key": "@@kiln-helm-secret:privatePem@@",
        "pw": "@@kiln-helm-app-secret:DEMO_DATABASE_PASSWORD@@",
        "tpl": "{{ .Values.appSecrets.DEMO_DATABASE_PASSWORD }}",
    }
    assert mounted["database"]["host"] == "${KILN_REGISTRY_PASSWORD}"
    text = json.dumps(configmap)
    assert (
        SECRET not in text and "KEYBYTES" not in text and base64.b64encode(b"KEYBYTES").decode() not in text
    )
    # Kiln's own actions still run where they belong: the Secret holds the value given at install.
    secret = next(d for d in docs if d["metadata"]["name"] == "demo-app-secrets")
    assert base64.b64decode(secret["data"]["DEMO_DATABASE_PASSWORD"]).decode() == SECRET


def test_the_generated_compose_file_escapes_the_pushed_text_and_never_holds_the_secret():
    files = render_scaffold(hostile_inputs({"DEMO_DATABASE_PASSWORD": SECRET}))
    assert SECRET not in "".join(files.values())
    compose = yaml.safe_load(files["compose/compose.yaml"])
    content = compose["configs"]["app-config-webhook"]["content"]
    # `docker compose` expands ${VAR} in its whole file, configs' content included; `$$` is a `$`.
    assert "$${KILN_REGISTRY_PASSWORD}" in content and "${KILN_REGISTRY_PASSWORD}" not in content.replace(
        "$$", ""
    )
    secret_env = compose["services"]["webhook"]["environment"]["DEMO_DATABASE_PASSWORD"]
    assert secret_env.startswith("${DEMO_DB_PASSWORD:?")  # the operator's variable, by name only
