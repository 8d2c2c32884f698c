"""One valid instance of every event in the catalogue (used by round-trip and contract tests)."""

from shared.events import (
    AuditCompleted,
    BuildCancelRequested,
    BuildFinished,
    BuildRequested,
    BuildWaiting,
    CompileCompleted,
    DeployCompleted,
    ImageFailed,
    ImagePushed,
    ImageRequested,
    ManifestPushed,
    RollbackRequested,
    ScanCompleted,
    StageFinished,
    StageStarted,
    VerifyCompleted,
)
from shared.events.build import Options, Source, Trigger
from shared.events.compile import Artifact, FactorySetTiming, ModuleResult, TargetPlatform
from shared.events.deploy import Check, DeployedImage
from shared.events.scan import Finding

DIGEST = "sha256:" + "a" * 64

SAMPLES = [
    BuildRequested(
        package="demo",
        build_number=3,
        version="axion",
        source=Source(repo_url="https://example.invalid/team/mono.git", ref="main", commit="c0ffee"),
        options=Options(skip_deploy=True, notify="raci"),
        trigger=Trigger(kind="bitbucket-cloud", actor="ana", delivery_id="d-1"),
    ),
    BuildWaiting(
        package="demo",
        build_number=4,
        source=Source(
            repo_url="https://example.invalid/team/mono.git", ref="refs/heads/main", commit="c0ffee"
        ),
        waiting_on="6f1c2e3a-0000-4000-8000-000000000001",
        waiting_on_number=3,
        limit=1,
    ),
    StageStarted(stage="compile", platform="linux/arm64"),
    StageFinished(stage="keys", status="failed", duration_ms=12, error="missing demo_private.pem"),
    BuildCancelRequested(reason="superseded", actor="gateway"),
    BuildFinished(status="failed", duration_ms=9000, failed_stage="image", error="boom"),
    CompileCompleted(
        ok=True,
        modules=(ModuleResult(module="core.text", factory="core", platform="linux/amd64", status="ok"),),
        sets=(FactorySetTiming(factory="core", platform="linux/amd64", modules=1, ok=1, failed=0),),
        artifacts=(
            Artifact(
                platform="linux/amd64",
                reference=f"127.0.0.1:5000/kiln/kiln-artifacts/demo@{DIGEST}",
                digest=DIGEST,
            ),
        ),
        targets=(TargetPlatform(target="web", platform="linux/amd64"),),
    ),
    ImageRequested(
        target="web",
        platform="linux/amd64",
        base_image="kiln-base:bookworm-amd64",
        tier="web",
        factories=("core", "web"),
        command=("python3", "-m", "web.server"),
        port=8080,
        repository="127.0.0.1:5000/kiln/axion-web-demo",
    ),
    ImagePushed(
        target="web",
        platform="linux/amd64",
        repository="127.0.0.1:5000/kiln/axion-web-demo",
        tag="latest",
        digest=DIGEST,
        size_bytes=1234,
    ),
    ImageFailed(target="web", platform="linux/arm64", error="exit 1", log_tail=("line",)),
    ManifestPushed(
        target="web",
        repository="127.0.0.1:5000/kiln/axion-web-demo",
        tag="latest",
        digest=DIGEST,
        platforms=("linux/amd64", "linux/arm64"),
    ),
    ScanCompleted(
        target="web",
        platform="linux/amd64",
        digest=DIGEST,
        scanner="trivy",
        counts={"CRITICAL": 0, "HIGH": 1},
        verdict="pass",
        findings=(Finding(id="CVE-2024-1", severity="HIGH", package="openssl"),),
    ),
    AuditCompleted(mode="secrets", counts={"HIGH": 0}),
    DeployCompleted(
        substrate="compose",
        release="demo-dev",
        revision=2,
        images=(DeployedImage(service="web", reference="r@" + DIGEST),),
    ),
    VerifyCompleted(
        checks=(Check(service="web", healthy=True, pass_rate=100.0),), pass_rate=100.0, healthy=True
    ),
    RollbackRequested(
        package="demo",
        build_number=5,
        to_build_id="0d6f2b1e-4f0e-4c8e-9a1d-3e0a8c1b5f20",
        to_number=3,
        version="axion",
        source=Source(repo_url="https://example.invalid/team/mono.git", ref="main", commit="c0ffee"),
        trigger=Trigger(kind="rollback", actor="token"),
    ),
]
