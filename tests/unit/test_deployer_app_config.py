"""The app's own config and secrets in the deployer: what each service mounts and gets, in the
generated compose file and chart, in the deploy step (fetched by the build's reference, secrets
from the deployer's environment), and what never leaves the deployer's memory."""

from __future__ import annotations

import base64
import json
import logging
import os
import uuid
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker
from sqlalchemy.pool import StaticPool

from services.deployer.adapters.kubernetes import KubernetesSubstrate
from services.deployer.app_config import document_fetcher
from services.deployer.deploy_step import DeployStep
from services.deployer.gate import ImageState
from services.deployer.models import DeployerBuild, DeployerFact, DeployerImage, DeployerRelease
from services.deployer.ports import Release, restored_inputs
from services.deployer.release_log import ReleaseLog
from services.deployer.scaffold import chart_manifests, render_scaffold, scaffold_inputs, write_scaffold
from services.deployer.settings import DeployerSettings
from services.deployer.store import GateStore
from shared.db.models import Base
from shared.events import BuildFinished, StageFinished
from shared.registry import DigestMismatch
from tests.unit.app_config_fixtures import APP_YAML, app_config, document
from tests.unit.test_deployer_gate import Envelope, FakeContext
from tests.unit.test_deployer_helm import NOT_FOUND, FakeHelm, _installed, _substrate
from tests.unit.test_deployer_kubernetes import RecordingApiClient
from tests.unit.test_deployer_rollback import PLATFORM, SERVICES, reference
from tests.unit.test_deployer_verify import FakeProbe, FakeSubstrate

SECRET = f"pw-{uuid.uuid4().hex}"
ENV = {"DEMO_DB_PASSWORD": SECRET}
KEYS = (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", b"PUBLIC")
K8S_VERSION = "1.29.0"
# Repository content that tries to reach what only the operator has.
HOSTILE = (
    b'database: {host: "${KILN_REGISTRY_PASSWORD}", port: 5432}\n'
    b'mqtt: {broker: "{{ lookup \\"v1\\" \\"Secret\\" \\"\\" \\"\\" }}",'
    b' key: "@@kiln-helm-secret:privatePem@@", pw: "@@kiln-helm-app-secret:DEMO_DATABASE_PASSWORD@@"}\n'
    b"report: {title: t}\n"
)


def inputs(doc: str | None = None, secrets=None, cfg=None):
    cfg = cfg or app_config()
    return scaffold_inputs(
        cfg,
        "demo",
        config_path="config.yaml",
        env={},
        app_document=doc if doc is not None else document(cfg),
        secret_values=secrets,
    )


def test_each_service_mounts_only_the_sections_it_reads_and_gets_only_its_secrets():
    made = inputs()
    assert sorted(made.app_configs) == ["report", "webhook"]
    assert sorted(json.loads(made.app_configs["webhook"])) == ["database", "mqtt"]
    assert sorted(json.loads(made.app_configs["report"])) == ["database", "report"]
    apps = {svc.name: svc.app_secrets for svc in made.topology.apps}
    assert apps == {
        "report": ("DEMO_DATABASE_PASSWORD",),
        "scheduler": (),
        "storage-worker": (),
        "webhook": ("DEMO_DATABASE_PASSWORD",),
    }
    assert SECRET not in repr(inputs(secrets=ENV | {"DEMO_DATABASE_PASSWORD": SECRET}))


def test_the_compose_file_names_the_secret_source_never_its_value_and_escapes_the_repository():
    made = inputs(document(app_config(), HOSTILE), {"DEMO_DATABASE_PASSWORD": SECRET})
    files = render_scaffold(made)
    assert SECRET not in "".join(files.values())
    compose = yaml.safe_load(files["compose/compose.yaml"])
    webhook, scheduler = compose["services"]["webhook"], compose["services"]["scheduler"]
    assert webhook["environment"]["KILN_APP_CONFIG"] == "/etc/kiln/app-config.json"
    assert webhook["environment"]["DEMO_DATABASE_PASSWORD"] == (
        "${DEMO_DB_PASSWORD:?set DEMO_DB_PASSWORD (app_secrets.DEMO_DATABASE_PASSWORD)}"
    )
    assert {"source": "app-config-webhook", "target": "/etc/kiln/app-config.json"} in webhook["configs"]
    assert webhook["labels"]["dev.kiln.app-config-checksum"] == made.app_config_checksum("webhook")
    assert "labels" not in scheduler and "KILN_APP_CONFIG" not in scheduler["environment"]
    assert "DEMO_DATABASE_PASSWORD" not in scheduler["environment"]
    content = compose["configs"]["app-config-webhook"]["content"]
    # `docker compose` turns $$ back into $: the container sees the repository's text, unexpanded.
    assert json.loads(content.replace("$$", "$"))["database"]["host"] == "${KILN_REGISTRY_PASSWORD}"
    assert "${KILN_REGISTRY_PASSWORD}" not in content.replace("$${", "")


def test_the_chart_mounts_and_annotates_the_readers_and_its_secret_values_stay_out_of_it():
    made = inputs(secrets={"DEMO_DATABASE_PASSWORD": SECRET})
    docs = chart_manifests(made, KEYS)
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    by_name = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    secret = by_name[("Secret", "demo-app-secrets")]
    assert base64.b64decode(secret["data"]["DEMO_DATABASE_PASSWORD"]).decode() == SECRET
    configmap = by_name[("ConfigMap", "demo-app-config")]
    assert sorted(configmap["data"]) == ["report.json", "webhook.json"]
    webhook = by_name[("Deployment", "webhook")]["spec"]["template"]
    container = webhook["spec"]["containers"][0]
    assert webhook["metadata"]["annotations"]["kiln.dev/app-config-checksum"] == made.app_config_checksum(
        "webhook"
    )
    assert {
        "name": "app-config",
        "mountPath": "/etc/kiln/app-config.json",
        "subPath": "webhook.json",
        "readOnly": True,
    } in container["volumeMounts"]
    assert {
        "name": "DEMO_DATABASE_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "demo-app-secrets", "key": "DEMO_DATABASE_PASSWORD"}},
    } in container["env"]
    scheduler = by_name[("Deployment", "scheduler")]["spec"]["template"]
    assert "kiln.dev/app-config-checksum" not in scheduler["metadata"]["annotations"]
    assert all(m["name"] != "app-config" for m in scheduler["spec"]["containers"][0]["volumeMounts"])
    on_disk = render_scaffold(made)
    assert SECRET not in "".join(on_disk.values())
    assert (
        '(index .Values.appSecrets "DEMO_DATABASE_PASSWORD") | b64enc'
        in on_disk["chart/templates/app-secret.yaml"]
    )
    assert 'appSecrets:\n  DEMO_DATABASE_PASSWORD: ""' in on_disk["chart/values.yaml"]


def test_repository_text_that_looks_like_a_helm_action_or_placeholder_stays_text():
    template = render_scaffold(inputs(document(app_config(), HOSTILE)))["chart/templates/app-configmap.yaml"]
    assert "{{ lookup" not in template.replace('{{ "{{" }}', "")  # escaped: Helm prints it, never runs it
    assert "@@kiln-helm-secret:privatePem@@" in template  # a placeholder only in secret templates
    assert "@@kiln-helm-app-secret:DEMO_DATABASE_PASSWORD@@" in template
    assert ".Values" not in template


def test_a_change_of_one_section_changes_the_checksum_of_its_readers_only():
    before = inputs()
    changed = document(app_config(), app_yaml_with("topic: demo/events", "topic: demo/other"))
    after = inputs(changed)
    assert after.app_config_checksum("webhook") != before.app_config_checksum("webhook")  # reads mqtt
    assert after.app_config_checksum("report") == before.app_config_checksum("report")
    assert after.config_checksum == before.config_checksum  # Kiln's own config: the same


def app_yaml_with(old: str, new: str) -> bytes:
    return APP_YAML.read_text().replace(old, new).encode()


def test_a_rollback_restores_the_app_config_of_todays_readers():
    made = inputs()
    previous = Release("demo", 1, {}, made.config_json, {"webhook": "{}\n", "scheduler": "{}\n"})
    restored = restored_inputs(made, previous)
    assert restored.app_configs == {"webhook": "{}\n", "report": made.app_configs["report"]}


# -- the deploy step -------------------------------------------------------------------------------


class RecordingSubstrate(FakeSubstrate):
    def __init__(self):
        super().__init__(broken_image="bad")
        self.release = None
        self.inputs = []

    def apply(self, inputs, revision):
        self.inputs.append(inputs)
        logging.getLogger("kiln.test").info("applying %r", inputs)  # a careless log line
        return super().apply(inputs, revision)


class Harness:
    def __init__(self, env=ENV, fetch=None):
        engine = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
        tables = [DeployerBuild, DeployerImage, DeployerFact, DeployerRelease]
        Base.metadata.create_all(engine, tables=[t.__table__ for t in tables])
        sessions = sessionmaker(engine, expire_on_commit=False)
        self.store, self.releases = GateStore(sessions), ReleaseLog(sessions)
        self.substrate = RecordingSubstrate()
        self.cfg = app_config()
        self.document = document(self.cfg)
        self.fetched = []
        self.step = DeployStep(
            store=self.store,
            load_config=lambda: self.cfg,
            config_path="config.yaml",
            substrate_for=lambda name: self.substrate,
            probe=FakeProbe(self.substrate),
            platform=PLATFORM,
            env=env,
            check_signatures=lambda refs: [],
            releases=self.releases,
            fetch_document=fetch or self.fetch,
            sleep=lambda s: None,
        )

    def fetch(self, where, package):
        self.fetched.append((where, package))
        return self.document.encode()

    def deploy(self, app_config_ref=None):
        build_id = str(uuid.uuid4())
        self.store.ensure_build(build_id, "demo", {}, {})
        self.store.expect_targets(build_id, [], app_config_ref)
        assert self.store.claim_deploy(build_id, "e-" + build_id)
        images = []
        for service in SERVICES:
            repository, _, digest = reference(service, "1").partition("@")
            images.append(ImageState(service, PLATFORM, True, repository=repository, digest=digest))
        ctx = FakeContext(build_id, Envelope("e-" + build_id))
        self.step(ctx, self.store.build(build_id), images)
        return build_id, ctx.emitted


REF = {"reference": "file:///srv/kiln-artifacts/demo@sha256:" + "a" * 64, "digest": "sha256:" + "a" * 64}


def test_the_deploy_mounts_the_builds_document_and_gives_the_secret_and_logs_none_of_it(caplog):
    caplog.set_level(logging.DEBUG)
    harness = Harness()
    build_id, emitted = harness.deploy(REF)
    assert emitted[-1] == BuildFinished(status="succeeded", duration_ms=emitted[-1].duration_ms)
    assert harness.fetched == [(REF["reference"], "demo")]
    applied = harness.substrate.inputs[-1]
    assert applied.app_document == harness.document and sorted(applied.app_configs) == ["report", "webhook"]
    assert applied.secret_values["DEMO_DATABASE_PASSWORD"] == SECRET
    assert harness.releases.get(build_id).app_config_json == harness.document
    events = json.dumps([e.model_dump(mode="json") for e in emitted])
    assert SECRET not in events and SECRET not in caplog.text
    assert "values hidden" in caplog.text


@pytest.mark.parametrize(
    ("env", "ref", "fetch_error", "error"),
    [
        ({}, REF, None, "packages.demo.app_secrets.DEMO_DATABASE_PASSWORD.env: DEMO_DB_PASSWORD is not set"),
        (ENV, None, None, "packages.demo.app_config is set, but this build carries no app config"),
        (
            ENV,
            REF,
            DigestMismatch("hashes to sha256:bbb"),
            "the build's app config does not match its digest",
        ),
        (ENV, REF, FileNotFoundError(), "is gone from the artifact store"),
    ],
)
def test_a_deploy_that_cannot_give_the_app_its_config_or_secrets_fails_naming_why(
    env, ref, fetch_error, error
):
    def fetch(where, package):
        if fetch_error:
            raise fetch_error
        return harness.document.encode()

    harness = Harness(env=env, fetch=fetch)
    _, emitted = harness.deploy(ref)
    deploy = next(e for e in emitted if isinstance(e, StageFinished) and e.stage == "deploy")
    assert deploy.status == "failed" and error in deploy.error, deploy.error
    assert harness.substrate.inputs == []  # nothing was replaced


def test_an_operator_config_listing_a_section_the_build_did_not_trim_fails_the_deploy():
    harness = Harness()
    harness.document = json.dumps({"schema": 1, "package": "demo", "path": "config/app.yaml", "sections": {}})
    _, emitted = harness.deploy(REF)
    deploy = next(e for e in emitted if isinstance(e, StageFinished) and e.stage == "deploy")
    assert (
        "packages.demo.app_config.sections: database, mqtt, report not in the build's trimmed" in deploy.error
    )


def test_the_deployer_fetches_from_its_configured_store_only(tmp_path):
    settings = DeployerSettings(artifact_store=f"file://{tmp_path}")
    fetch = document_fetcher(settings)
    with pytest.raises(ValueError, match="not in the configured artifact store"):
        fetch("file:///etc/elsewhere/demo@sha256:" + "a" * 64, "demo")
    with pytest.raises(ValueError, match="not in the configured artifact store"):
        fetch(f"file://{tmp_path}/other-package@sha256:" + "a" * 64, "demo")


# -- the k8s substrate: in memory, and through helm ----------------------------------------------


def test_the_cluster_gets_the_app_config_and_secret_in_memory_and_reads_the_config_back():
    made = inputs(secrets={"DEMO_DATABASE_PASSWORD": SECRET})
    api = RecordingApiClient()
    KubernetesSubstrate(api, lambda d, p: KEYS).apply(made, revision=1)
    applied = {r[1].split("?")[0]: r[3] for r in api.requests if r[0] == "PATCH"}
    namespace = made.topology.namespace
    secret = applied[f"/api/v1/namespaces/{namespace}/secrets/demo-app-secrets"]
    assert base64.b64decode(secret["data"]["DEMO_DATABASE_PASSWORD"]).decode() == SECRET
    configmap = applied[f"/api/v1/namespaces/{namespace}/configmaps/demo-app-config"]

    api = RecordingApiClient(
        {
            f"/apis/apps/v1/namespaces/{namespace}/deployments": {
                "items": [{"metadata": {"annotations": {"kiln.dev/revision": "4", "kiln.dev/images": "{}"}}}]
            },
            f"/api/v1/namespaces/{namespace}/configmaps/demo-app-config": configmap,
        }
    )
    release = KubernetesSubstrate(api, lambda d, p: KEYS).current(made.topology)
    assert release.app_configs == dict(made.app_configs)


def test_helm_gets_the_secret_as_a_private_file_and_prints_the_repository_text_unchanged(
    tmp_path, monkeypatch
):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helm = FakeHelm(bin_dir, monkeypatch)
    helm.answer(history=[NOT_FOUND], upgrade=[_installed(1)])
    made = inputs(document(app_config(), HOSTILE), {"DEMO_DATABASE_PASSWORD": SECRET})
    _substrate(helm).apply(made, revision=1)
    upgrade = helm.calls()[-1]
    assert not any(SECRET in arg for arg in upgrade["argv"])
    secret_file = upgrade["files"]["appSecrets.DEMO_DATABASE_PASSWORD"]
    assert secret_file["mode"] == "0o600" and secret_file["dir_mode"] == "0o700"
    assert not Path(secret_file["path"]).exists()
    rendered = yaml.safe_load(upgrade["app-secret"])
    assert base64.b64decode(rendered["data"]["DEMO_DATABASE_PASSWORD"]).decode() == SECRET
    mounted = json.loads(yaml.safe_load(upgrade["app-configmap"])["data"]["webhook.json"])
    assert mounted["mqtt"] == {
        "broker": '{{ lookup "v1" "Secret" "" "" }}',
        "key": "@@kiln-helm-secret:privatePem@@",
        "pw": "@@kiln-helm-app-secret:DEMO_DATABASE_PASSWORD@@",
    }
    assert mounted["database"]["host"] == "${KILN_REGISTRY_PASSWORD}"


SNAPSHOTS = Path(__file__).resolve().parents[1] / "snapshots" / "deployer_app_config"
SNAPSHOTTED = (
    "compose/compose.yaml",
    "chart/values.yaml",
    "chart/templates/app-configmap.yaml",
    "chart/templates/app-secret.yaml",
    "chart/templates/deployment-webhook.yaml",
    "chart/templates/deployment-scheduler.yaml",
)


def test_the_app_config_parts_of_the_scaffold_match_their_snapshots():
    """The example with its app config on (refresh with KILN_UPDATE_SNAPSHOTS=1)."""
    rendered = render_scaffold(inputs())
    files = {path: rendered[path] for path in SNAPSHOTTED}
    if os.environ.get("KILN_UPDATE_SNAPSHOTS"):
        write_scaffold(files, SNAPSHOTS)
    assert {path: (SNAPSHOTS / path).read_text(encoding="utf-8") for path in SNAPSHOTTED} == files
