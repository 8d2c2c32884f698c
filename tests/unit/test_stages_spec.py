"""The replay scope of `kiln replay --only`: a stage's job, and what an event starts."""

from __future__ import annotations

from shared.stages import in_replay_scope, job_of, stages_started_by


def test_a_job_is_one_services_stages_with_one_trigger():
    assert [s.name for s in job_of("keys")] == ["config", "keys", "compile"]
    assert [s.name for s in job_of("push")] == ["image", "push"]
    assert [s.name for s in job_of("scan")] == ["scan", "audit"]
    assert [s.name for s in job_of("attest")] == ["attest"]
    assert job_of("no-such-stage") == ()


def test_in_replay_scope():
    assert in_replay_scope("attest", None)
    assert in_replay_scope("audit", "scan") and not in_replay_scope("attest", "scan")
    assert not in_replay_scope("image", "compile") and not in_replay_scope("scan", "nonsense")


def test_what_an_event_starts_per_service():
    assert stages_started_by("imager", "image.requested.arm64") == ("image", "push")
    assert stages_started_by("attester", "manifest.pushed") == ("attest",)
    assert stages_started_by("scanner", "image.pushed") == ("scan", "audit")
    assert stages_started_by("imager", "image.pushed") == ()  # the manifests queue starts no stage
    assert stages_started_by("reporter", "build.finished") == ()
