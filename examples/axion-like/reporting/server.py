"""Service `report` (tier report): the JSON harness on /status (Kiln's verify gates on it), and
the same as HTML (`/status?format=html`) and as a chart (`/status.png`).
Run: python3 -m reporting.server"""

from __future__ import annotations

from core import jsonio
from core.checks import Check, run_checks
from core.config import writable_dir
from httpapi.server import Request, Response, json_response, status_document
from httpapi.service import run_service
from rendering.charts import bar_chart, png_size
from rendering.pages import render_table
from reporting.summary import chart_values, rows_of

SERVICE = "report"
PORT = 8082


def self_checks() -> list[Check]:
    sample = run_checks([Check("one", lambda: 1, 1), Check("two", lambda: 1, 2)])
    return [
        Check("rendering.pages escapes", lambda: "&lt;b&gt;" in render_table("t", [{"x": "<b>"}]), True),
        Check("rendering.charts png", lambda: png_size(bar_chart({"a": 50.0}, 64, 32)), (64, 32)),
        Check("reporting.summary rows", lambda: [r["result"] for r in rows_of(sample)], ["pass", "FAIL"]),
        Check("core.jsonio round trip", lambda: jsonio.loads(jsonio.dumps({"b": [1, 2]})), {"b": [1, 2]}),
    ]


def status(request: Request) -> Response:
    document = status_document(SERVICE, self_checks)
    (writable_dir("REPORT_CACHE", "report-cache") / "last.json").write_bytes(jsonio.dumps(document))
    wanted = request.query.get("format", "json")
    if wanted == "json":
        return json_response(200, document)
    if wanted == "html":
        title = f"{SERVICE}: {document['tests']['summary']['pass_rate']}% of checks pass"
        return Response(
            200, render_table(title, rows_of(document["tests"])).encode(), "text/html; charset=utf-8"
        )
    raise ValueError(f"format must be json or html, not {wanted!r}")


def chart(_request: Request) -> Response:
    return Response(200, bar_chart(chart_values(status_document(SERVICE, self_checks)["tests"])), "image/png")


def main() -> int:
    return run_service(
        SERVICE,
        default_port=PORT,
        checks=self_checks,
        routes={("GET", "/status"): status, ("GET", "/status.png"): chart},
    )


if __name__ == "__main__":
    raise SystemExit(main())
