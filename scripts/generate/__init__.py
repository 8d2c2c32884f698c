"""Write the process tables that derive from the specs (shared.processes, shared.stages).

    python -m scripts.generate          rewrite the generated files
    python -m scripts.generate --check  exit 1 (naming the stale files) if one differs

Generated: docker-compose.yml from its GENERATED marker on (broker-users, Kiln's services, the
volumes), docker-compose.offline.yml's list of Kiln services, .env.example's broker passwords,
the chart's process lists (charts/kiln/templates/_processes.tpl), values.yaml's `secretKeys`
and the architectures values.schema.json accepts. The dev stack
(scripts/stack/layout.py) reads shared.processes at run time, so it has no generated file.
"""

from __future__ import annotations

from pathlib import Path

from scripts.generate.chart import render_processes_tpl, render_schema, render_values
from scripts.generate.compose import render_compose, render_env_example, render_offline
from shared.processes import ServiceProcesses, service_processes

ROOT = Path(__file__).resolve().parents[2]
COMMAND = "python -m scripts.generate"
TARGETS = {
    "docker-compose.yml": render_compose,
    "docker-compose.offline.yml": render_offline,
    ".env.example": render_env_example,
    "charts/kiln/templates/_processes.tpl": render_processes_tpl,
    "charts/kiln/values.yaml": render_values,
    "charts/kiln/values.schema.json": render_schema,
}


def render_all(root: Path = ROOT, processes: tuple[ServiceProcesses, ...] | None = None) -> dict[str, str]:
    """Each generated file's path -> its content now (from the checked-in file's static part)."""
    processes = service_processes() if processes is None else processes
    return {
        path: render((root / path).read_text(encoding="utf-8"), processes) for path, render in TARGETS.items()
    }


def stale(root: Path = ROOT) -> list[str]:
    return [
        path for path, text in render_all(root).items() if (root / path).read_text(encoding="utf-8") != text
    ]
