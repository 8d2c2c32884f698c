"""`python -m services.reporter [worker]` runs the reporter; `report` and `diff` read the history.

python -m services.reporter report BUILD_ID --html out.html [--text out.txt]
python -m services.reporter diff BUILD_A BUILD_B
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from services.reporter.bootstrap import bootstrap
from services.reporter.settings import ReporterSettings
from shared.bus.worker import run_worker
from shared.history import BuildNotFound, build_detail, build_diff
from shared.logging import setup_logging
from shared.report import render_html, render_text, report_view
from shared.settings import load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.reporter")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("worker", help="consume the history, notify and cdevents queues (default)")
    report = commands.add_parser("report", help="render a build's report from the history")
    report.add_argument("build_id")
    report.add_argument("--html", type=Path, required=True)
    report.add_argument("--text", type=Path)
    diff = commands.add_parser("diff", help="what changed between two builds (JSON)")
    diff.add_argument("build_a")
    diff.add_argument("build_b")
    args = parser.parse_args(argv)

    settings = load_settings(ReporterSettings)
    setup_logging(settings.log_level, fmt=settings.log_format, secrets=settings.secret_values().values())
    reporter = bootstrap(settings)
    if args.command in (None, "worker"):
        return run_worker(reporter)
    with reporter.parts["sessions"]() as session:
        if args.command == "diff":
            try:
                print(json.dumps(build_diff(session, args.build_a, args.build_b), indent=2, default=str))
            except BuildNotFound as exc:
                print(f"error: no build {exc} in the history", file=sys.stderr)
                return 1
            return 0
        detail = build_detail(session, args.build_id)
    if detail is None:
        print(f"error: no build {args.build_id} in the history", file=sys.stderr)
        return 1
    view = report_view(detail, build_url=settings.build_url(args.build_id))
    args.html.write_text(render_html(view))
    if args.text:
        args.text.write_text(render_text(view))
    print(f"wrote {args.html}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
