"""on_image_pushed end to end on the real registry, trivy, gpg and skopeo with a fake bus context;
then `python -m services.attester verify` on the result; and the private keys' bytes found in no
log line, event, pushed artifact, signature file or command output."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from services.attester import keys
from services.attester.adapters.referrers import fallback_tag, referrers
from services.attester.bootstrap import parts
from services.attester.cosign import signature_tag
from services.attester.handlers import SigningKeys
from services.attester.ports import Subject
from services.attester.provenance import BuildFacts
from services.attester.settings import AttesterSettings
from shared.events import ImagePushed, ManifestPushed, StageFinished, StageStarted
from shared.skopeo import SkopeoSigner
from tests.attester.conftest import stop_gpg_agent

pytestmark = pytest.mark.integration


@dataclass
class FakeContext:
    build_id: str = "01JATTESTBUILD"
    package: str = "demo"
    emitted: list = field(default_factory=list)

    def emit(self, event):
        self.emitted.append(event)


def facts(build_id: str, subject: Subject) -> BuildFacts:
    now = dt.datetime.now(dt.UTC)
    return BuildFacts(
        build_id=build_id,
        build_number=7,
        package="demo",
        source_repository="https://git.example.com/acme/demo.git",
        ref="refs/heads/develop",
        commit="a" * 40,
        config_digest="sha256:" + "c" * 64,
        started_on=now - dt.timedelta(minutes=3),
        finished_on=now,
        base_image="127.0.0.1:5000/kiln/base@sha256:" + "b" * 64,
        tier_requirements={"core": "d" * 64},
    )


def settings_env(operator_keys, lookaside) -> dict[str, str]:
    return {
        "KILN_TRIVY": os.environ["KILN_TRIVY"],
        "KILN_ATTEST_GPG_HOME": str(operator_keys.gpg_home),
        "KILN_ATTEST_GPG_FINGERPRINT": operator_keys.gpg_fingerprint,
        "KILN_ATTEST_GPG_PUBLIC_KEY": str(operator_keys.gpg_public_key),
        "KILN_ATTEST_COSIGN_KEY": str(operator_keys.cosign_key),
        "KILN_ATTEST_COSIGN_PUBLIC_KEY": str(operator_keys.cosign_public_key),
        "KILN_ATTEST_LOOKASIDE_DIR": str(lookaside),
    }


@pytest.fixture
def attested(registry, make_image, operator_keys, tmp_path, monkeypatch, caplog):
    env = settings_env(operator_keys, tmp_path / "lookaside")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = AttesterSettings()
    attester = parts(settings, build_facts=facts, registry=registry)
    image = make_image("handler")
    event = ImagePushed(
        target="web",
        platform="linux/amd64",
        repository=image.repository,
        tag="t",
        digest=image.digest,
        size_bytes=1,
    )
    ctx = FakeContext()
    caplog.set_level(logging.DEBUG)
    result = attester.handler(event, ctx)
    yield image, ctx, result, env
    subprocess.run(["gpgconf", "--homedir", str(operator_keys.gpg_home), "--kill", "gpg-agent"], check=False)


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "services.attester", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
    )


def test_handler_attests_and_verify_accepts(attested, registry):
    image, ctx, result, env = attested
    assert result is not None
    started, finished = ctx.emitted
    assert isinstance(started, StageStarted) and started.stage == "attest"
    assert isinstance(finished, StageFinished) and finished.status == "succeeded", finished.error
    assert finished.target == "web" and finished.platform == "linux/amd64"
    detail = finished.detail
    assert detail["sbom"]["packages"] > 50
    assert detail["signatures"]["cosign"] == registry.manifest_digest(image.repo, signature_tag(image.digest))
    assert detail["provenance"] in [d["digest"] for d in referrers(registry, image.repo, image.digest)]

    shown = run_cli(env, "verify", f"{image.repository}:t")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "FAIL" not in shown.stdout
    for name in ("sbom", "signature (gpg", "signature (cosign", "provenance"):
        assert f"ok   {name}" in shown.stdout, shown.stdout
    assert "build 7 (01JATTESTBUILD)" in shown.stdout


def test_verify_fails_for_an_unattested_image(make_image, operator_keys, tmp_path):
    image = make_image("bare")
    shown = run_cli(settings_env(operator_keys, tmp_path / "lookaside"), "verify", image.reference)
    assert shown.returncode == 1, shown.stdout + shown.stderr
    assert shown.stdout.count("FAIL") == 4, shown.stdout


def test_handler_failure_is_a_failed_stage_with_the_reason(registry, make_image, operator_keys, tmp_path):
    image = make_image("fails")
    signing_keys = SigningKeys(
        operator_keys.gpg_home, "0" * 40, keys.load_private_key(operator_keys.cosign_key)
    )
    attester = parts(
        AttesterSettings(trivy=os.environ["KILN_TRIVY"]),
        build_facts=facts,
        registry=registry,
        signer=SkopeoSigner(
            lookaside_dir=tmp_path,
            registry_credentials=(registry.username, os.environ["KILN_REGISTRY_PASSWORD"]),
        ),
        signing_keys=signing_keys,
    )
    event = ImagePushed(
        target="web",
        platform="linux/amd64",
        repository=image.repository,
        tag="t",
        digest=image.digest,
        size_bytes=1,
    )
    ctx = FakeContext()
    assert attester.handler(event, ctx) is None
    finished = ctx.emitted[-1]
    assert finished.status == "failed" and finished.error.startswith("attest failed: signing ")


def secret_fragments(operator_keys) -> list[str]:
    """Every form the private keys' bytes could leak in: PEM lines, DER base64, the scalar in hex,
    and the armored GPG secret key's body lines."""
    pem = operator_keys.cosign_key.read_text()
    key = keys.load_private_key(operator_keys.cosign_key)
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    scalar = key.private_numbers().private_value.to_bytes(32, "big")
    body = [line for line in pem.splitlines() if line and "-----" not in line]
    gpg = subprocess.run(
        ["gpg", "--homedir", str(operator_keys.gpg_home), "--batch", "--armor", "--export-secret-keys"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    gpg_body = [line for line in gpg.splitlines()[3:-2] if len(line) == 64]
    assert body and len(gpg_body) > 10
    return [
        *body,
        base64.b64encode(der).decode()[:64],
        scalar.hex(),
        base64.b64encode(scalar).decode(),
        *gpg_body,
    ]


def test_private_keys_appear_in_no_log_event_artifact_or_output(
    attested, registry, operator_keys, caplog, capsys
):
    image, ctx, _result, env = attested
    places: dict[str, str] = {
        "logs": caplog.text,
        "events": "".join(e.model_dump_json() for e in ctx.emitted),
    }
    # Everything now stored next to the image: referrers, their blobs, the .sig manifest and layers.
    for ref in (fallback_tag(image.digest), signature_tag(image.digest)):
        _, _, data = registry.get_manifest(image.repo, ref)
        places[ref] = data.decode()
        document = json.loads(data)
        for entry in document.get("manifests") or []:
            _, _, manifest = registry.get_manifest(image.repo, entry["digest"])
            places[entry["digest"]] = manifest.decode()
            for layer in json.loads(manifest)["layers"]:
                places[layer["digest"]] = registry.get_blob(image.repo, layer["digest"]).decode()
        for layer in document.get("layers") or []:
            places[layer["digest"]] = registry.get_blob(image.repo, layer["digest"]).decode()
    lookaside = Path(env["KILN_ATTEST_LOOKASIDE_DIR"])
    for path in lookaside.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            places[str(path.relative_to(lookaside))] = base64.b64encode(data).decode() + repr(data)
    again = operator_keys.directory.parent / "again"
    generated = run_cli({}, "keys", "generate", "--dir", str(again))
    stop_gpg_agent(again / "gnupg")
    assert generated.returncode == 0, generated.stderr
    places["keys generate output"] = generated.stdout + generated.stderr
    shown = run_cli(env, "verify", image.reference)
    places["verify output"] = shown.stdout + shown.stderr
    assert len(places) > 8
    fragments = secret_fragments(operator_keys)
    leaks = [(where, f[:12]) for where, text in places.items() for f in fragments if f in text]
    assert not leaks, leaks


def test_multi_arch_index_and_its_images_attested_and_verified(
    registry, operator_keys, tmp_path, monkeypatch
):
    env = settings_env(operator_keys, tmp_path / "lookaside")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    attester = parts(AttesterSettings(), build_facts=facts, registry=registry)
    repo = f"kiln-test/attester-{uuid.uuid4().hex[:6]}-multi"
    children = {
        platform: registry.manifest_digest("kiln/base", f"bookworm-{platform[6:]}")
        for platform in ("linux/amd64", "linux/arm64")
    }
    index = registry.push_index(repo, "b7", [(p, "kiln/base", d) for p, d in children.items()])
    repository = f"{registry.host}/{repo}"
    ctx = FakeContext()
    for platform, digest in children.items():
        pushed = ImagePushed(
            target="web", platform=platform, repository=repository, tag="b7", digest=digest, size_bytes=1
        )
        assert attester.handler(pushed, ctx) is not None, ctx.emitted[-1].error
    manifest = ManifestPushed(
        target="web", repository=repository, tag="b7", digest=index, platforms=tuple(children)
    )
    result = attester.index_handler(manifest, ctx)
    assert result is not None, ctx.emitted[-1].error
    finished = ctx.emitted[-1]
    assert finished.status == "succeeded" and finished.platform is None and "sbom" not in finished.detail
    # The tag still names the index: signing wrote no tag.
    assert registry.manifest_digest(repo, "b7") == index

    shown = run_cli(env, "verify", f"{repository}:b7")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert f"{repository}@{index} (index)" in shown.stdout
    assert shown.stdout.count("(image)") == 2 and shown.stdout.count("ok   sbom") == 2
    assert shown.stdout.count("ok   signature (gpg") == 3, shown.stdout

    # A new index over the same signed images, pushed by someone else: the containers policy
    # accepts it (skopeo 1.9.3 checks the images an index selects, not the index), the cosign
    # signature and the provenance of the index itself are missing, so verify refuses it.
    other = registry.push_index(repo, "b8", [(p, "kiln/base", d) for p, d in reversed(children.items())])
    shown = run_cli(env, "verify", f"{repository}:b8")
    assert shown.returncode == 1, shown.stdout
    index_lines = shown.stdout.split("(image)")[0]
    assert f"{repository}@{other} (index)" in index_lines
    assert "ok   signature (gpg" in index_lines
    assert "FAIL signature (cosign format)" in index_lines and "FAIL provenance" in index_lines
