"""The build report: one view of a build's run history, rendered as HTML and text.

The reporter mails it; the gateway serves it at `/ui/builds/{id}/report`. Both build the view
from `shared.history.build_detail`, so the page and the email always agree.
"""

from shared.report.render import render_html, render_text
from shared.report.view import report_view

__all__ = ["render_html", "render_text", "report_view"]
