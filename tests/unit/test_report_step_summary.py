"""A stage's `detail.summary` shows on its row of the email (the attest stage's SBOM package count
and signatures, issue #18), with no template change per stage."""

from __future__ import annotations

from shared.report.view import timeline

BUILD = {"started_at": "2026-12-02T10:00:00", "requested_at": "2026-12-02T10:00:00"}


def step(stage, **detail):
    return {
        "stage": stage,
        "target": "api",
        "platform": "linux/amd64",
        "status": "succeeded",
        "started_at": "2026-12-02T10:00:01",
        "finished_at": "2026-12-02T10:00:02",
        "duration_ms": 1000,
        "detail": detail,
    }


def test_a_stage_summary_is_on_its_row_and_absent_elsewhere():
    rows = timeline(BUILD, [step("attest", summary="118 packages, signed (gpg, cosign)"), step("scan")])
    assert rows[0]["summary"] == "118 packages, signed (gpg, cosign)"
    assert rows[0]["label"] == "Attest api amd64"
    assert rows[1]["summary"] is None
    assert timeline(BUILD, [step("push", summary=["not", "a", "string"])])[0]["summary"] is None
