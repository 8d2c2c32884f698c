"""The deployer deploys only images signed by the attester's key (deployment.require_signature).

On the real registry and the real skopeo containers policy: the example package's four images are
copies of the base image under the repositories the operator config derives; the deploy step runs
with the deployer's real signature checker and a recording substrate. An image re-pushed by
someone else (unsigned, or signed by another key) is refused at deploy with the reason; nothing is
applied; the build ends failed at deploy.
"""

from __future__ import annotations

import json
import os
import uuid

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker
from sqlalchemy.pool import StaticPool

from services.deployer.deploy_step import DeployStep
from services.deployer.gate import ImageState
from services.deployer.models import DeployerBuild, DeployerFact, DeployerImage
from services.deployer.settings import DeployerSettings
from services.deployer.signatures import signature_checker
from services.deployer.store import GateStore
from shared.config import load_config
from shared.events import BuildFinished
from shared.naming import image_repository
from shared.registry import manifests as mf
from shared.skopeo import SkopeoSigner
from tests.unit.test_deployer_docs import OPERATOR_CONFIG
from tests.unit.test_deployer_gate import Envelope, FakeContext
from tests.unit.test_deployer_verify import FakeProbe, FakeSubstrate

pytestmark = pytest.mark.integration

SERVICES = ("webhook", "report", "scheduler", "storage-worker")


@pytest.fixture
def store():
    engine = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
    tables = [DeployerBuild.__table__, DeployerImage.__table__, DeployerFact.__table__]
    DeployerBuild.metadata.create_all(engine, tables=tables)
    return GateStore(sessionmaker(engine, expire_on_commit=False))


@pytest.fixture
def lookaside(tmp_path):
    return tmp_path / "lookaside"


@pytest.fixture
def signer(registry, lookaside):
    return SkopeoSigner(
        lookaside_dir=lookaside,
        registry_credentials=(registry.username, os.environ["KILN_REGISTRY_PASSWORD"]),
    )


def push(registry, repository: str, source_tag: str, tag: str) -> str:
    """A copy of the local base image (`kiln/base:<source_tag>`) at `repository:tag`; its digest."""
    repo = repository.split("/", 1)[1]
    media_type, digest, data = registry.get_manifest("kiln/base", source_tag)
    for blob in mf.blob_descriptors(json.loads(data)):
        registry.copy_blob(repo, blob["digest"], "kiln/base")
    registry.put_manifest(repo, tag, data, media_type)
    return digest


def deploy(store, settings, images):
    """The deploy step as the deployer runs it, on a recording substrate; (emitted, substrate)."""
    build_id = str(uuid.uuid4())
    store.ensure_build(build_id, "demo", {}, {})
    assert store.claim_deploy(build_id, "e1")
    substrate = FakeSubstrate(broken_image="none")
    substrate.release = None
    step = DeployStep(
        store=store,
        load_config=lambda: load_config(OPERATOR_CONFIG, {"KILN_KEYS_DIR": "/tmp/k"}),
        config_path=OPERATOR_CONFIG,
        substrate_for=lambda name: substrate,
        probe=FakeProbe(substrate),
        platform="linux/amd64",
        env={},
        check_signatures=signature_checker(settings),
        sleep=lambda s: None,
    )
    ctx = FakeContext(build_id, Envelope("e1"))
    step(ctx, store.build(build_id), images)
    return ctx.emitted, substrate


@pytest.fixture
def example_images(registry, signer, operator_keys):
    """The example's four amd64 images, pushed and signed by the operator's key."""
    tag = f"t{uuid.uuid4().hex[:8]}"
    images = {}
    for service in SERVICES:
        repository = image_repository(registry.host, "kiln", "axion", service, "demo", "linux/amd64")
        digest = push(registry, repository, "bookworm-amd64", tag)
        signer.sign(
            repository, digest, gpg_home=operator_keys.gpg_home, fingerprint=operator_keys.gpg_fingerprint
        )
        images[service] = ImageState(
            service, "linux/amd64", True, repository=repository, tag=tag, digest=digest
        )
    return tag, images


def settings_for(registry, lookaside, public_key) -> DeployerSettings:
    return DeployerSettings(
        attest_gpg_public_key=str(public_key),
        attest_lookaside_dir=str(lookaside),
        registry_username=registry.username,
        registry_password=os.environ["KILN_REGISTRY_PASSWORD"],
    )


def test_signed_images_are_deployed(store, registry, lookaside, operator_keys, example_images):
    _, images = example_images
    emitted, substrate = deploy(
        store, settings_for(registry, lookaside, operator_keys.gpg_public_key), list(images.values())
    )
    assert len(substrate.applied) == 1
    assert {f.status for f in emitted if isinstance(f, BuildFinished)} == {"succeeded"}


@pytest.mark.parametrize("repush", ["unsigned", "signed by another key"])
def test_an_image_re_pushed_by_someone_else_is_refused_at_deploy(
    repush, store, registry, signer, lookaside, operator_keys, other_keys, example_images
):
    tag, images = example_images
    victim = images["report"]
    # Someone with push rights puts their own image under the same tag (another digest).
    theirs = push(registry, victim.repository, "bookworm-arm64", tag)
    assert theirs != victim.digest
    if repush == "signed by another key":
        signer.sign(
            victim.repository, theirs, gpg_home=other_keys.gpg_home, fingerprint=other_keys.gpg_fingerprint
        )
    forged = {
        **images,
        "report": ImageState(
            "report", "linux/amd64", True, repository=victim.repository, tag=tag, digest=theirs
        ),
    }
    emitted, substrate = deploy(
        store, settings_for(registry, lookaside, operator_keys.gpg_public_key), list(forged.values())
    )
    assert substrate.applied == [], "nothing may be deployed"
    (finished,) = [e for e in emitted if isinstance(e, BuildFinished)]
    assert finished.status == "failed" and finished.failed_stage == "deploy"
    assert f"{victim.repository}@{theirs} is not signed by the attester's key" in finished.error
    assert victim.digest not in finished.error  # the signed images are not blamed


def test_require_signature_without_a_key_refuses_with_what_to_do(store, registry, example_images):
    _, images = example_images
    emitted, substrate = deploy(store, DeployerSettings(), list(images.values()))
    assert substrate.applied == []
    (finished,) = [e for e in emitted if isinstance(e, BuildFinished)]
    assert "set KILN_ATTEST_GPG_PUBLIC_KEY" in finished.error
