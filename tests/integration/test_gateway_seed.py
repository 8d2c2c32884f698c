"""Writes a finished build into the reporter's tables (as the reporter would) for gateway tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from shared.db.models import (
    MANIFEST_PLATFORM,
    BuildCompileSet,
    BuildImage,
    BuildRun,
    BuildScan,
    BuildStep,
    EventLog,
)
from shared.events import (
    BuildFinished,
    BuildRequested,
    CompileCompleted,
    Envelope,
    ImagePushed,
    ImageRequested,
    ScanCompleted,
    StageFinished,
    StageStarted,
)
from shared.events.build import Source
from shared.events.compile import FactorySetTiming, TargetPlatform

DIGEST = "sha256:" + "b" * 64
PLATFORMS = ("linux/amd64", "linux/arm64")
TARGETS = ("webhook", "report")


def build_envelopes(build_id: str, package: str = "demo") -> list[Envelope]:
    events = [
        BuildRequested(
            package=package, build_number=1, version="axion", source=Source(ref="refs/heads/main")
        ),
        StageStarted(stage="compile"),
        CompileCompleted(
            ok=True,
            sets=tuple(
                FactorySetTiming(factory=f, platform=p, modules=4, ok=4, failed=0)
                for f in ("core", "report")
                for p in PLATFORMS
            ),
            targets=tuple(TargetPlatform(target=t, platform=p) for t in TARGETS for p in PLATFORMS),
        ),
        StageFinished(stage="compile", status="succeeded", duration_ms=1200),
        *(
            ImageRequested(
                target=t,
                platform=p,
                base_image="kiln-base",
                tier="minimal",
                factories=("core",),
                command=("python3",),
                repository=f"127.0.0.1:5000/kiln/axion-{t}-demo",
            )
            for t in TARGETS
            for p in PLATFORMS
        ),
        *(
            ImagePushed(
                target=t, platform=p, repository=f"r/{t}", tag="b1", digest=DIGEST, size_bytes=50_000_000
            )
            for t in TARGETS
            for p in PLATFORMS
        ),
        ScanCompleted(
            target="webhook", platform="linux/amd64", digest=DIGEST, scanner="trivy", verdict="pass"
        ),
        BuildFinished(status="succeeded", duration_ms=64_000),
    ]
    return [Envelope.new(e, source="test", build_id=build_id, package=package) for e in events]


def seed_build(
    sessions,
    *,
    package: str = "demo",
    status: str = "succeeded",
    ref: str = "refs/heads/main",
    size_mb: int = 50,
    arm_size_mb: int | None = None,
    multi_arch: bool = False,
) -> tuple[str, list[Envelope]]:
    """`multi_arch`: also the multi-arch index rows the reporter writes on manifest.pushed (no size
    of their own); `arm_size_mb`: linux/arm64 images of another size than the amd64 ones."""
    build_id = str(uuid.uuid4())
    start = datetime.now(UTC).replace(tzinfo=None)
    envelopes = build_envelopes(build_id, package)
    if status in ("queued", "running"):
        envelopes = [e for e in envelopes if e.type != BuildFinished.ce_type()]
    with sessions() as session:
        session.add(
            BuildRun(
                build_id=build_id,
                package=package,
                build_number=1,
                status=status,
                version="axion",
                ref=ref,
                commit_sha="c" * 40,
                trigger_kind="github",
                platforms=list(PLATFORMS),
                requested_at=start,
                started_at=start,
                finished_at=start + timedelta(seconds=64),
                duration_ms=64_000,
                failed_stage="scan" if status == "failed" else None,
            )
        )
        for offset, stage in enumerate(
            ("config", "keys", "compile", "image", "push", "scan", "deploy", "verify")
        ):
            session.add(
                BuildStep(
                    build_id=build_id,
                    stage=stage,
                    status="failed" if status == "failed" and stage == "scan" else "succeeded",
                    started_at=start + timedelta(seconds=offset * 5),
                    finished_at=start + timedelta(seconds=offset * 5 + 4),
                    duration_ms=4000 + offset,
                    log_tail=[f"{stage} line 1", f"{stage} line 2"],
                )
            )
        for factory in ("core", "report"):
            for platform in PLATFORMS:
                session.add(
                    BuildCompileSet(
                        build_id=build_id,
                        platform=platform,
                        factory=factory,
                        modules=4,
                        ok=4,
                        failed=0,
                        cached=1,
                        duration_ms=300,
                    )
                )
        for target in TARGETS:
            for platform in PLATFORMS:
                session.add(
                    BuildImage(
                        build_id=build_id,
                        target=target,
                        platform=platform,
                        repository=f"127.0.0.1:5000/kiln/axion-{target}-{package}",
                        tag="b1",
                        digest=DIGEST,
                        size_bytes=(arm_size_mb if arm_size_mb and platform == "linux/arm64" else size_mb)
                        * 1_000_000,
                        pushed_at=start,
                    )
                )
                session.add(
                    BuildScan(
                        build_id=build_id,
                        target=target,
                        platform=platform,
                        digest=DIGEST,
                        scanner="trivy",
                        high=1,
                        low=3,
                        verdict="pass",
                        scanned_at=start,
                    )
                )
            if multi_arch:
                session.add(
                    BuildImage(
                        build_id=build_id,
                        target=target,
                        platform=MANIFEST_PLATFORM,
                        repository=f"127.0.0.1:5000/kiln/axion-{target}-{package}",
                        tag="b1",
                        digest="sha256:" + "c" * 64,
                        size_bytes=None,
                        status="manifest",
                        pushed_at=start,
                    )
                )
        for index, envelope in enumerate(envelopes):
            session.add(
                EventLog(
                    event_id=envelope.id,
                    type=envelope.type,
                    routing_key=envelope.routing_key(),
                    source=envelope.source,
                    build_id=build_id,
                    package=package,
                    time=start + timedelta(milliseconds=index),
                    attempt=1,
                    body=envelope.to_json().decode(),
                    received_at=start,
                )
            )
        session.commit()
    return build_id, envelopes
