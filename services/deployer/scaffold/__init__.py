"""The scaffold: every generated deployment file, rendered from Jinja2 templates plus config."""

from services.deployer.scaffold.inputs import ScaffoldInputs, scaffold_inputs
from services.deployer.scaffold.render import (
    chart_manifests,
    render_chart_templates,
    render_scaffold,
    write_scaffold,
)

__all__ = [
    "ScaffoldInputs",
    "chart_manifests",
    "render_chart_templates",
    "render_scaffold",
    "scaffold_inputs",
    "write_scaffold",
]
