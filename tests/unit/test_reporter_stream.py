"""A recorded event stream of one full build (built from the event models), and projection tests.

`full_build_stream()` is the acceptance fixture of the reporter: integration tests feed it to a
real MariaDB and compare the rows, replay it, render its email and translate it to CDEvents.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from services.reporter.projection import project
from shared.events import (
    AuditCompleted,
    BuildFinished,
    BuildRequested,
    CompileCompleted,
    DeployCompleted,
    Envelope,
    Event,
    ImagePushed,
    ImageRequested,
    ManifestPushed,
    ScanCompleted,
    StageFinished,
    StageStarted,
    VerifyCompleted,
)
from shared.events.build import Options, Source, Trigger
from shared.events.compile import Artifact, FactorySetTiming, ModuleResult, TargetPlatform
from shared.events.deploy import Check, DeployedImage
from shared.events.scan import Finding

PLATFORMS = ("linux/amd64", "linux/arm64")
TARGETS = ("webhook", "scheduler")
START = datetime(2026, 11, 21, 9, 0, 0, tzinfo=UTC)
REPO = "127.0.0.1:5000/kiln/axion-{target}-demo"


def digest(*parts: str) -> str:
    return "sha256:" + uuid.uuid5(uuid.NAMESPACE_URL, "/".join(parts)).hex * 2


def full_build_stream(
    build_id: str | None = None,
    *,
    notify: str | None = "dev@example.com",
    fail_stage: str | None = None,
    image_sizes: dict[str, int] | None = None,
    cves: tuple[str, ...] = ("CVE-2026-0001",),
    skip_compile: bool = False,
) -> list[Envelope]:
    """Every event of one build in pipeline order, with fixed ids and times."""
    build_id = build_id or str(uuid.uuid4())
    sizes = image_sizes or {}
    events: list[tuple[str, Event]] = []

    def stage(name: str, ms: int, *, service: str, target=None, platform=None, detail=None, error=None):
        events.append((service, StageStarted(stage=name, target=target, platform=platform)))
        failed = name == fail_stage
        events.append(
            (
                service,
                StageFinished(
                    stage=name,
                    status="failed" if failed else "succeeded",
                    duration_ms=ms,
                    target=target,
                    platform=platform,
                    detail=detail or {},
                    error=error if failed else None,
                    log_tail=("step 4/6 : COPY build /app", "error: exit status 1") if failed else (),
                ),
            )
        )
        return failed

    events.append(
        (
            "gateway",
            BuildRequested(
                package="demo",
                build_number=7,
                version="axion",
                source=Source(
                    repo_url="https://github.com/example/monorepo.git", ref="main", commit="c0ffee1"
                ),
                options=Options(notify=notify, skip_compile=skip_compile),
                trigger=Trigger(kind="github", actor="ana"),
            ),
        )
    )
    host = {"host_arch": "x86_64", "host_os": "Linux 6.1 (Debian 12)"}
    stage("config", 120, service="compiler", detail=host)
    stage("keys", 40, service="compiler")
    failed = stage("compile", 5400, service="compiler", detail={"modules": 6}, error="core.text: syntax")
    if failed:
        return _finish(events, build_id, "compile", "core.text: syntax")
    modules = [
        ModuleResult(
            module=f"{factory}.{name}", factory=factory, platform=platform, status=status, duration_ms=ms
        )
        for platform in PLATFORMS
        for factory, name, status, ms in (
            ("core", "text", "ok", 800),
            ("core", "scheduler", "cached", 0),
            ("webhook", "server", "ok", 1200),
        )
    ]
    sets = [
        FactorySetTiming(factory=f, platform=p, modules=n, ok=n - c, failed=0, cached=c, duration_ms=ms)
        for p in PLATFORMS
        for f, n, c, ms in (("core", 2, 1, 800), ("webhook", 1, 0, 1200))
    ]
    events.append(
        (
            "compiler",
            CompileCompleted(
                ok=True,
                skipped=skip_compile,
                modules=() if skip_compile else tuple(modules),
                sets=() if skip_compile else tuple(sets),
                artifacts=tuple(
                    Artifact(platform=p, reference=f"reg:5000/kiln/kiln-artifacts/demo@sha256:{i:064x}")
                    for i, p in enumerate(PLATFORMS)
                ),
                targets=tuple(TargetPlatform(target=t, platform=p) for t in TARGETS for p in PLATFORMS),
                duration_ms=5400,
            ),
        )
    )
    for target in TARGETS:
        for platform in PLATFORMS:
            repository = REPO.format(target=target) + ("-arm" if platform.endswith("arm64") else "")
            events.append(
                (
                    "compiler",
                    ImageRequested(
                        target=target,
                        platform=platform,
                        base_image="kiln-base:bookworm",
                        tier="minimal",
                        repository=repository,
                    ),
                )
            )
            if stage("image", 30_000, service="imager", target=target, platform=platform, error="exit 1"):
                return _finish(events, build_id, "image", "exit 1")
            size = sizes.get(f"{target}/{platform}", 50_000_000 + len(target) * 1_000_000)
            d = digest(build_id, target, platform)
            events.append(
                (
                    "imager",
                    ImagePushed(
                        target=target,
                        platform=platform,
                        repository=repository,
                        tag="7",
                        digest=d,
                        size_bytes=size,
                        proven=True,
                    ),
                )
            )
            findings = tuple(Finding(id=c, severity="HIGH", package="openssl", installed="3.0.1",
                                     fixed="3.0.2") for c in cves)  # fmt: skip
            events.append(
                (
                    "scanner",
                    ScanCompleted(
                        target=target,
                        platform=platform,
                        digest=d,
                        scanner="trivy",
                        counts={"CRITICAL": 0, "HIGH": len(cves), "MEDIUM": 2},
                        verdict="pass",
                        findings=findings,
                    ),
                )
            )
        events.append(
            (
                "imager",
                ManifestPushed(
                    target=target,
                    repository=REPO.format(target=target),
                    tag="7",
                    digest=digest(build_id, target),
                    platforms=PLATFORMS,
                ),
            )
        )
    events.append(("scanner", AuditCompleted(mode="secrets", counts={"HIGH": 0}, note="no secrets")))
    stage("deploy", 8000, service="deployer", detail={"substrate": "compose"})
    events.append(
        (
            "deployer",
            DeployCompleted(
                substrate="compose",
                release="demo-axion",
                revision=3,
                images=tuple(
                    DeployedImage(service=t, reference=REPO.format(target=t) + ":7") for t in TARGETS
                ),
            ),
        )
    )
    stage("verify", 2500, service="deployer")
    events.append(
        (
            "deployer",
            VerifyCompleted(
                checks=(Check(service="webhook", healthy=True, pass_rate=100.0),),
                pass_rate=100.0,
                healthy=True,
            ),
        )
    )
    return _finish(events, build_id, None, None)


def _finish(events, build_id, failed_stage, error) -> list[Envelope]:
    status = "failed" if failed_stage else "succeeded"
    tail = ("step 4/6 : COPY build /app", "error: exit status 1") if failed_stage else ()
    finished = BuildFinished(status=status, duration_ms=60_000, failed_stage=failed_stage, error=error,
                             log_tail=tail)  # fmt: skip
    events.append(("deployer" if not failed_stage else "compiler", finished))
    envelopes = []
    for index, (service, event) in enumerate(events):
        envelope = Envelope.new(event, source=service, build_id=build_id, package="demo")
        envelopes.append(
            envelope.model_copy(
                update={
                    "id": str(uuid.uuid5(uuid.NAMESPACE_OID, f"{build_id}/{index}")),
                    "time": START + timedelta(seconds=index),
                }
            )
        )
    return envelopes


# -- projection (pure) ------------------------------------------------------------------------


def test_projection_of_a_full_build_has_every_row():
    stream = full_build_stream("b-1")
    p = project(stream)
    run = p.runs["b-1"]
    assert run["status"] == "succeeded" and run["package"] == "demo" and run["commit_sha"] == "c0ffee1"
    assert run["host_arch"] == "x86_64" and run["platforms"] == list(PLATFORMS)
    assert len(p.compiles) == 6 and len(p.compile_sets) == 4
    assert len(p.images) == 6  # 4 per-platform images + 2 multi-arch manifests
    assert len(p.scans) == 4 and len(p.audits) == 1
    assert {s["stage"] for s in p.steps} == {"config", "keys", "compile", "image", "deploy", "verify"}


def test_projection_does_not_depend_on_arrival_order():
    stream = full_build_stream("b-2")
    assert project(stream).runs == project(list(reversed(stream))).runs


def test_event_of_an_unknown_build_still_makes_a_run_row():
    finished = full_build_stream("b-3")[-1]
    run = project([finished]).runs["b-3"]
    assert run["status"] == "succeeded" and run["package"] == "demo" and run["requested_at"] is None


def test_failed_build_records_stage_and_error():
    p = project(full_build_stream("b-4", fail_stage="image"))
    assert p.runs["b-4"]["status"] == "failed" and p.runs["b-4"]["failed_stage"] == "image"
    failed_step = next(s for s in p.steps if s["status"] == "failed")
    assert failed_step["log_tail"] and failed_step["error"] == "exit 1"


def test_a_rollback_run_is_a_run_row_naming_the_build_it_goes_back_to():
    from shared.events import BuildFinished, Envelope, RollbackRequested

    requested = RollbackRequested(
        package="demo",
        build_number=7,
        to_build_id="b-1",
        to_number=3,
        version="axion",
        source=Source(repo_url="https://example.invalid/mono.git", ref="refs/heads/main", commit="c0ffee"),
        trigger=Trigger(kind="rollback", actor="token"),
    )
    stream = [
        Envelope.new(event, source="gateway", build_id="b-7", package="demo")
        for event in (requested, BuildFinished(status="succeeded", duration_ms=9000))
    ]
    run = project(stream).runs["b-7"]
    assert (run["build_number"], run["trigger_kind"], run["commit_sha"], run["status"]) == (
        7,
        "rollback",
        "c0ffee",
        "succeeded",
    )
    assert run["options"]["rollback_to"] == 3 and run["options"]["rollback_to_build"] == "b-1"
