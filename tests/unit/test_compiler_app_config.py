"""Stage config reads the app's own config file from the pushed tree (untrusted) where the
operator's app_config says, trims and checks it; stage compile stores it and compile.completed
carries it by reference. Through the real bootstrap with the fakes of test_compiler_service."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from shared.config import generate_keys
from shared.document_artifacts import pull_document, push_document
from shared.events import BuildFinished, BuildRequested, CompileCompleted, ImageRequested
from shared.events.build import Options, Source
from shared.events.compile import DocumentReference
from shared.registry import DigestMismatch
from tests.unit.app_config_fixtures import operator_data, write_operator
from tests.unit.test_compiler_service import EXAMPLE, FakeStore, run_build


@pytest.fixture
def source(tmp_path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".ruff_cache", "__pycache__"))
    return root


@pytest.fixture
def keys(tmp_path) -> Path:
    generate_keys(tmp_path / "keys", "demo")
    return tmp_path / "keys"


class DocumentStore(FakeStore):
    """FakeStore with a real shared-directory document store beside it."""

    def __init__(self, directory):
        super().__init__()
        self.directory = directory
        self.documents: list[bytes] = []

    def push_document(self, data, *, package, build):
        self.documents.append(data)
        stored = push_document(data, store=f"file://{self.directory}", package=package, build=build)
        return DocumentReference(reference=stored.reference, digest=stored.digest)


def build(tmp_path, root, keys_dir, data=None, event=None):
    write_operator(tmp_path / "operator" / "config.yaml", data)  # read by run_build as KILN_CONFIG_PATH
    store = DocumentStore(tmp_path / "artifacts")
    return run_build(tmp_path, root, keys_dir, event, store=store), store


def test_the_trimmed_app_config_travels_by_reference_in_compile_completed(tmp_path, source, keys):
    ctx, _ = build(tmp_path, source, keys)
    assert ctx.stage("config").status == "succeeded"
    assert ctx.stage("config").detail["app_config"] == {"path": "config/app.yaml", "sections": 3}
    completed = ctx.of(CompileCompleted)[0]
    assert completed.app_config is not None and completed.app_config.reference.startswith("file://")
    document = json.loads(pull_document(completed.app_config.reference))
    assert sorted(document["sections"]) == ["database", "mqtt", "report"]  # local_dev trimmed away
    assert "app_config" not in json.dumps([r.model_dump(mode="json") for r in ctx.of(ImageRequested)])
    assert len(ctx.of(ImageRequested)) == 8  # the images are requested as before


def test_a_reused_compile_still_carries_the_app_config(tmp_path, source, keys):
    build(tmp_path, source, keys)
    again = BuildRequested(
        package="demo", source=Source(path=str(source)), options=Options(skip_compile=True)
    )
    ctx, _ = build(tmp_path, source, keys, event=again)
    assert ctx.of(CompileCompleted)[0].skipped and ctx.of(CompileCompleted)[0].app_config is not None


def test_a_missing_section_or_file_or_typo_fails_stage_config_naming_the_key(tmp_path, source, keys):
    (source / "config" / "app.yaml").write_text("database: {host: db}\nreport: {}\n")
    ctx, _ = build(tmp_path, source, keys)
    config = ctx.stage("config")
    assert config.status == "failed" and ctx.of(BuildFinished)[0].failed_stage == "config"
    assert 'packages.demo.app_config.sections[1]: section "mqtt" is not in config/app.yaml' in config.error
    assert not ctx.of(ImageRequested)

    (source / "config" / "app.yaml").unlink()
    ctx, _ = build(tmp_path, source, keys)
    assert ctx.stage("config").error.startswith(
        "packages.demo.app_config.path: config/app.yaml is not in the repository"
    )


def test_a_link_to_a_file_outside_the_tree_is_refused_before_it_is_read(tmp_path, source, keys):
    outside = tmp_path / "operator-secrets.yaml"
    outside.write_text("database: {password: from-outside}\nmqtt: {}\nreport: {}\n")
    (source / "config" / "app.yaml").unlink()
    os.symlink(outside, source / "config" / "app.yaml")
    ctx, store = build(tmp_path, source, keys)
    config = ctx.stage("config")
    assert config.status == "failed" and "symbolic links leaving the source tree" in config.error
    assert store.documents == [] and "from-outside" not in config.model_dump_json()


def test_a_repository_env_entry_with_a_typo_fails_naming_it(tmp_path, source, keys):
    repository = (source / "config.yaml").read_text()
    (source / "config.yaml").write_text(  # env is a build key: the repository may set it
        repository.replace(
            "      webhook:\n        command:",
            "      webhook:\n        env: {DEMO_MQTT_BROKRE: tcp://elsewhere}\n        command:",
        )
    )
    ctx, _ = build(tmp_path, source, keys)
    error = ctx.stage("config").error
    assert "packages.demo.services.webhook.env.DEMO_MQTT_BROKRE: names option BROKRE" in error, error


def test_a_package_without_app_config_carries_none(tmp_path, source, keys):
    data = operator_data(app_secrets={})
    del data["packages"]["demo"]["app_config"]
    for service in data["packages"]["demo"]["services"].values():
        service.pop("app_config_sections", None)
    ctx, store = build(tmp_path, source, keys, data)
    assert ctx.of(CompileCompleted)[0].app_config is None and store.documents == []


def test_a_document_whose_bytes_changed_is_refused(tmp_path):
    stored = push_document(b'{"schema": 1}\n', store=f"file://{tmp_path}", package="demo", build="b1")
    path = tmp_path / "demo" / f"{stored.digest.replace(':', '-')}.json"
    path.write_bytes(b'{"schema": 1, "evil": true}\n')
    with pytest.raises(DigestMismatch, match=stored.digest):
        pull_document(stored.reference)
