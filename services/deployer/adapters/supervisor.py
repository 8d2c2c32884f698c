"""The supervisor substrate generates configuration only: it writes the program sections where
supervisord includes them, and never starts or checks processes itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.deployer.ports import Release
from services.deployer.scaffold import ScaffoldInputs, render_scaffold
from services.deployer.topology import ServicePlan, Topology


class SupervisorSubstrate:
    name = "supervisor"

    def __init__(self, conf_dir: Path):
        self._conf_dir = conf_dir

    def apply(self, inputs: ScaffoldInputs, revision: int) -> dict[str, Any]:
        name = f"supervisor/{inputs.network}.conf"
        path = self._conf_dir / f"{inputs.network}.conf"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_scaffold(inputs)[name], encoding="utf-8")
        return {"written": str(path), "note": "run `supervisorctl reread && supervisorctl update`"}

    def current(self, topology: Topology) -> Release | None:
        return None  # nothing is read back, so nothing is ever rolled back

    def rollback(self, restored: ScaffoldInputs, previous: Release) -> dict[str, Any]:
        return self.apply(restored, previous.revision)

    def endpoint(self, topology: Topology, service: ServicePlan) -> str | None:
        return None

    def running(self, topology: Topology, service: ServicePlan) -> tuple[bool, str]:
        return True, "not checked (supervisor substrate generates configuration only)"

    def logs(self, topology: Topology, service: ServicePlan, lines: int = 50) -> list[str]:
        return []
