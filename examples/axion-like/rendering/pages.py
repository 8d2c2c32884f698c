"""HTML tables through Jinja2 with autoescape (MarkupSafe's native escaping)."""

from __future__ import annotations

from jinja2 import DictLoader, Environment, select_autoescape

_TEMPLATES = {
    "table.html": (
        "<!doctype html><html><head><meta charset='utf-8'><title>{{ title }}</title></head><body>"
        "<h1>{{ title }}</h1><table><tr>{% for h in headers %}<th>{{ h }}</th>{% endfor %}</tr>"
        "{% for row in rows %}<tr>{% for h in headers %}<td>{{ row.get(h, '') }}</td>{% endfor %}</tr>"
        "{% endfor %}</table></body></html>"
    ),
}
_ENV = Environment(loader=DictLoader(_TEMPLATES), autoescape=select_autoescape(default=True))


def render_table(title: str, rows: list[dict]) -> str:
    headers = list(rows[0]) if rows else []
    return _ENV.get_template("table.html").render(title=title, headers=headers, rows=rows)
