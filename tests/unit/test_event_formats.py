"""Event fields that become a path, a reference, a command or a template value are refused on
decode when malformed: an InvalidEvent naming the field, the value and the expected format, with
the envelope attached (so the consumer can still end the build)."""

from __future__ import annotations

import json

import pytest

from shared.events import Envelope, ImagePushed, ImageRequested, InvalidEvent, ScanCompleted, decode
from shared.events.compile import Artifact

DIGEST = "sha256:" + "a" * 64
ARTIFACT = {"platform": "linux/amd64", "reference": f"reg:5000/kiln/kiln-artifacts/demo@{DIGEST}"}
JOB = ImageRequested(
    target="web",
    platform="linux/amd64",
    artifact=Artifact(**ARTIFACT, digest=DIGEST),
    base_image="reg:5000/kiln/base:bookworm-amd64",
    tier="minimal",
    factories=("core", "web"),
    command=("python3", "-m", "web.server"),
    port=8080,
    health_path="/healthz?full=1",
    repository="reg:5000/kiln/axion-web-demo",
    tags=("latest", "b7"),
    commit="c0ffee",
)


def forged(event, **data) -> bytes:
    body = json.loads(Envelope.new(event, source="x", build_id="b-1", package="demo").to_json())
    body["data"].update(data)
    return json.dumps(body).encode()


def test_a_well_formed_job_decodes():
    assert decode(forged(JOB)).event() == JOB


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"artifact": {**ARTIFACT, "digest": "../.."}}, "artifact.digest: '../..' is not empty or a digest"),
        ({"artifact": {**ARTIFACT, "reference": "/etc"}}, "artifact.reference: '/etc' is not an artifact"),
        ({"artifact": {**ARTIFACT, "reference": f"file:///srv/../etc@{DIGEST}"}}, "artifact.reference"),
        ({"artifact": {**ARTIFACT, "digest": "sha256:" + "b" * 64}}, "not the digest the reference pins"),
        ({"base_image": "base:1\nRUN curl evil"}, "base_image: 'base:1\\nRUN curl evil' is not an image"),
        ({"base_image": "base:1 AS x"}, "base_image"),
        ({"repository": "evil.example/x y"}, "repository"),
        ({"repository": "https://evil.example/x"}, "repository"),
        ({"repository": "reg/x:{{ lookup }}"}, "repository"),
        ({"target": "../web"}, "target: '../web' is not a name"),
        ({"factories": ["../../etc"]}, "factories.0"),
        ({"factories": [".."]}, "factories.0"),
        ({"tier": "a/b"}, "tier"),
        ({"tags": ["latest", "b7\nx"]}, "tags.1"),
        ({"health_path": "/x', timeout=1); import os #"}, "health_path"),
        ({"command": ["python3", "-c", "a\nb"]}, "command.2"),
        ({"dockerfile": "../Dockerfile"}, "dockerfile"),
        ({"port": 0}, "port"),
        ({"requirements_hash": "zz"}, "requirements_hash"),
        ({"commit": "HEAD\n"}, "commit"),
    ],
)
def test_malformed_job_fields_are_refused_naming_field_and_value(data, named):
    with pytest.raises(InvalidEvent) as refused:
        decode(forged(JOB, **data))
    assert named in str(refused.value)
    assert refused.value.envelope is not None and refused.value.envelope.buildid == "b-1"


def test_pushed_and_scanned_digests_and_references_are_strict():
    pushed = ImagePushed(
        target="web", platform="linux/amd64", repository=JOB.repository, tag="b7", digest=DIGEST, size_bytes=1
    )
    for field, value in (("digest", "sha256:../.."), ("repository", "r/x\n"), ("tag", "-x"), ("target", "A")):
        with pytest.raises(InvalidEvent, match=field):
            decode(forged(pushed, **{field: value}))
    scan = ScanCompleted(target="web", platform="linux/amd64", digest=DIGEST, scanner="trivy", verdict="pass")
    with pytest.raises(InvalidEvent, match="digest"):
        decode(forged(scan, digest="/etc/passwd"))


def test_a_bad_envelope_has_no_envelope_to_report_on():
    body = json.loads(forged(JOB))
    body["package"] = "../demo"
    with pytest.raises(InvalidEvent, match="package") as refused:
        decode(json.dumps(body).encode())
    assert refused.value.envelope is None


def test_the_compiler_refuses_a_job_the_imager_would_refuse_at_plan_time():
    from services.compiler.fanout import PlanError, plan_images
    from shared.config import parse_config
    from shared.events import BuildRequested

    config = parse_config(
        """
factories: {core: {path: core}}
tiers: {minimal: {requirements: []}}
packages:
  demo:
    factories: [core]
    keys: {dir: /srv/keys/demo}
    services:
      web: {command: [python3, -m, core.web], port: 8080, health: "/x'", factories: [core], tier: minimal}
    deployment:
      registry: {host: "reg:5000", project: kiln}
""",
        env={},
    )
    with pytest.raises(PlanError, match="service web \\(linux/amd64\\): health_path"):
        plan_images(
            BuildRequested(package="demo", version="axion"),
            config,
            config.package("demo"),
            factory_dirs={"core": "core"},
            default_base_images={"linux/amd64": "reg:5000/kiln/base:amd64", "linux/arm64": "b:arm64"},
        )
