"""Real Trivy on images built and pushed in the test: a planted private key fails the secret gate
naming the file and layer, a clean image passes, a misconfigured Dockerfile yields findings, and
trivy missing, crashing or printing garbage is an error, never a pass."""

from __future__ import annotations

import datetime as dt
import io
import os
import stat
import tarfile
import uuid
from pathlib import Path

import docker
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from services.scanner.adapters.trivy import TrivyCli
from services.scanner.audit import audit_config, audit_deps, audit_secrets
from services.scanner.policy import evaluate
from services.scanner.report import NO_VULN_DB_NOTE, MalformedReport, ScannerCrashed, ScannerMissing
from shared.config import ScanPolicy

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parents[1] / "fixtures" / "trivy"
RUN = uuid.uuid4().hex[:6]


def dev_env() -> dict[str, str]:
    names = ("KILN_REGISTRY_URL", "KILN_REGISTRY_USERNAME", "KILN_REGISTRY_PASSWORD", "KILN_TRIVY")
    missing = [n for n in names if not os.environ.get(n)]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run ./kiln-dev services; source .kiln/dev.env")
    return {n: os.environ[n] for n in (*names, "KILN_BASE_IMAGE_AMD64") if n in os.environ}


def planted_key_pem() -> bytes:
    """A throwaway private key made now: nothing secret is ever committed."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def push_image(name: str, files: dict[str, bytes], dockerfile_tail: str = "") -> tuple[str, str]:
    """Build FROM the local base image with `files` copied in, push, return (repository, digest)."""
    env = dev_env()
    base = "kiln-base:bookworm-amd64"
    copies = "".join(f"COPY {path.lstrip('/').replace('/', '_')} {path}\n" for path in files)
    dockerfile = f"FROM {base}\n{copies}{dockerfile_tail}"
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for path, content in {
            "Dockerfile": dockerfile.encode(),
            **{p.lstrip("/").replace("/", "_"): c for p, c in files.items()},
        }.items():
            info = tarfile.TarInfo(path)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    context.seek(0)
    client = docker.from_env()
    try:
        repository = f"{env['KILN_REGISTRY_URL']}/kiln-test/scanner-{name}-{RUN}"
        client.images.build(fileobj=context, custom_context=True, tag=f"{repository}:t", rm=True)
        auth = {"username": env["KILN_REGISTRY_USERNAME"], "password": env["KILN_REGISTRY_PASSWORD"]}
        digest = ""
        for line in client.images.push(repository, "t", auth_config=auth, stream=True, decode=True):
            if "error" in line:
                raise AssertionError(f"push failed: {line['error']}")
            digest = line.get("aux", {}).get("Digest", digest)
        assert digest.startswith("sha256:"), "the registry returned no digest"
        return repository, digest
    finally:
        client.close()


@pytest.fixture(scope="module")
def trivy(tmp_path_factory) -> TrivyCli:
    env = dev_env()
    return TrivyCli(
        env["KILN_TRIVY"],
        tmp_path_factory.mktemp("trivy-cache"),
        db_download=False,  # no database here: the scans below must say so
        registry_credentials=(env["KILN_REGISTRY_USERNAME"], env["KILN_REGISTRY_PASSWORD"]),
        # 127.0.0.1:5000 is loopback: plain HTTP without being listed (shared.registry.transport)
        retry_delay_s=0,
    )


def test_planted_private_key_fails_the_secret_gate_naming_file_and_layer(trivy):
    repository, digest = push_image("key", {"/app/config/deploy_key.pem": planted_key_pem()})
    report = trivy.scan_image(f"{repository}@{digest}")
    assert [s.file for s in report.secrets] == ["/app/config/deploy_key.pem"]
    assert report.secrets[0].layer.startswith("sha256:")
    verdict = evaluate(report, ScanPolicy(max={}), dt.date.today())
    assert verdict.verdict == "fail"
    assert "/app/config/deploy_key.pem" in verdict.summary()
    assert report.secrets[0].layer in verdict.summary()


def test_clean_image_passes_and_says_the_vulnerability_scan_was_skipped(trivy):
    repository, digest = push_image("clean", {"/app/hello.txt": b"hello\n"})
    report = trivy.scan_image(f"{repository}@{digest}")
    assert report.secrets == ()
    assert report.vuln_db == "skipped"
    verdict = evaluate(report, ScanPolicy(), dt.date.today())
    assert verdict.verdict == "pass"
    assert verdict.notes[0] == NO_VULN_DB_NOTE
    assert evaluate(report, ScanPolicy(require_vuln_db=True), dt.date.today()).verdict == "fail"


def test_misconfigured_dockerfile_yields_config_findings(trivy, tmp_path):
    (tmp_path / "Dockerfile").write_text('FROM kiln-base:bookworm-amd64\nUSER root\nCMD ["python3"]\n')
    result = audit_config(trivy, tmp_path)
    found = {(f.id, f.file) for f in result.findings}
    assert ("DS-0002", "Dockerfile") in found  # USER root
    assert ("DS-0026", "Dockerfile") in found  # no HEALTHCHECK
    assert result.counts()["HIGH"] >= 1


def test_secrets_audit_finds_a_key_in_the_tree_but_not_in_our_fixtures(trivy, tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "id_ecdsa").write_bytes(planted_key_pem())
    result = audit_secrets(trivy, tmp_path)
    assert [f.file for f in result.findings] == ["src/id_ecdsa"]
    assert result.serious()
    assert audit_secrets(trivy, FIXTURES).findings == ()


def test_deps_audit_lists_pinned_and_unpinned_requirements_without_a_database(trivy, tmp_path):
    (tmp_path / "requirements").mkdir()
    (tmp_path / "requirements" / "web.txt").write_text("flask==3.0.0\nrequests>=2\n# comment\n-r base.txt\n")
    result = audit_deps(trivy, tmp_path, None)
    by_package = {f.package: f.id for f in result.findings}
    assert by_package == {"flask": "requirement-pinned", "requests": "requirement-unpinned"}
    assert result.counts()["pinned"] == 1 and result.counts()["unpinned"] == 1
    assert result.note.startswith(NO_VULN_DB_NOTE)


def fake_trivy(tmp_path: Path, script: str) -> str:
    path = tmp_path / "trivy"
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_trivy_missing_is_a_clear_error(tmp_path):
    with pytest.raises(ScannerMissing, match="KILN_TRIVY"):
        TrivyCli(str(tmp_path / "no-trivy"), tmp_path, db_download=False).scan_secrets(tmp_path)


def test_trivy_crashing_is_retried_a_bounded_number_of_times(tmp_path):
    counter = tmp_path / "runs"
    binary = fake_trivy(tmp_path, f'echo x >> {counter}; echo "FATAL Fatal error boom" >&2; exit 1')
    cli = TrivyCli(binary, tmp_path, db_download=False, attempts=3, retry_delay_s=0)
    with pytest.raises(ScannerCrashed, match=r"failed 3 time.*boom"):
        cli.scan_secrets(tmp_path)
    assert len(counter.read_text().splitlines()) == 3


def test_trivy_printing_garbage_is_malformed_not_clean(tmp_path):
    binary = fake_trivy(tmp_path, 'echo "{\\"SchemaVersion\\": 2, \\"Results\\": {}}"')
    with pytest.raises(MalformedReport):
        TrivyCli(binary, tmp_path, db_download=False).scan_image("127.0.0.1:5000/x@sha256:" + "0" * 64)
