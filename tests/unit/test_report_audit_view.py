"""The audit block of the report and the dashboard, from `log_audit` rows: per image and mode in
pipeline order, the worst severity, the verdict, findings by rule id and place."""

from __future__ import annotations

from shared.report.audit_view import audit_rows, audit_verdict
from shared.report.render import _env


def row(mode, image="api", verdict="report", counts=None, findings=(), note=None):
    return {"mode": mode, "image": image, "platform": "linux/amd64", "target": f"r/{image}@sha256:x",
            "verdict": verdict, "counts": counts or {}, "findings": list(findings), "note": note}  # fmt: skip


SECRET = {
    "id": "github-pat",
    "severity": "CRITICAL",
    "file": "/app/settings.py",
    "line": 3,
    "layer": "sha256:l",
}


def test_rows_per_image_in_mode_order_with_worst_severity_and_place():
    rows = audit_rows(
        [
            row("image", counts={"LOW": 2, "packages": 118}),
            row("secrets", verdict="fail", counts={"CRITICAL": 1}, findings=[SECRET]),
            row("deps", image="web", note="skipped: no vulnerability database"),
        ]
    )
    assert [(r["image"], r["mode"]) for r in rows] == [("api", "secrets"), ("api", "image"), ("web", "deps")]
    secret, image, deps = rows
    assert (secret["found"], secret["worst"], secret["tone"]) == (1, "CRITICAL", "bad")
    assert secret["findings"] == [
        {"id": "github-pat", "severity": "CRITICAL", "where": "/app/settings.py:3", "what": ""}
    ]
    assert (image["found"], image["worst"], image["packages"]) == (2, "LOW", 118)
    assert (deps["worst"], deps["note"]) == ("-", "skipped: no vulnerability database")
    assert audit_verdict(rows) == "fail"
    assert audit_verdict([r for r in rows if r["verdict"] != "fail"]) == "report"
    assert audit_verdict([]) is None


def test_the_blocks_render_only_with_audits():
    html, text = _env.get_template("audit.html.j2"), _env.get_template("audit.txt.j2")
    assert html.render(audits=[], audit_verdict=None).strip() == ""
    rows = audit_rows([row("secrets", verdict="fail", counts={"CRITICAL": 1}, findings=[SECRET])])
    page = html.render(audits=rows, audit_verdict="fail")
    assert 'id="audit"' in page and "github-pat at /app/settings.py:3" in page
    assert "CRITICAL github-pat at /app/settings.py:3" in text.render(audits=rows, audit_verdict="fail")


def test_kiln_pipeline_prints_one_line_per_audit_mode():
    from cli.progress import describe

    data = {"mode": "secrets", "image": "webhook", "platform": "linux/amd64", "target": "r/w@sha256:x",
            "counts": {"CRITICAL": 1, "HIGH": 0}, "verdict": "fail", "findings": [SECRET]}  # fmt: skip
    line = describe("audit.completed", {"data": data})
    assert line == "    audit secrets [webhook linux/amd64] fail {'CRITICAL': 1}"
