"""Verify a release: poll each service until healthy or out of attempts.

A service with a health path must answer 200 there; if it also serves the JSON test harness on
`/status` (`tests.summary.pass_rate`, `tests.assertions[]`), its pass rate must reach the
threshold, and the failing assertions are listed. A service without a port must stay running.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from services.deployer.ports import HttpProbe, Substrate
from services.deployer.topology import ServicePlan, Topology
from shared.config.sections import VerifyConfig
from shared.events.deploy import Check

STATUS_PATH = "/status"
TIMEOUT_S = 5.0
MAX_RESPONSE = 2000


@dataclass(frozen=True)
class VerifyResult:
    checks: tuple[Check, ...]
    pass_rate: float
    healthy: bool

    def failing(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.healthy)


def harness_of(body: str) -> tuple[float, tuple[str, ...]] | None:
    """(pass_rate, failing assertion descriptions) when `body` is the test harness, else None."""
    try:
        tests = json.loads(body)["tests"]
        rate = float(tests["summary"]["pass_rate"])
    except (ValueError, KeyError, TypeError):
        return None
    failing = tuple(
        f"{a.get('name', '?')}: {a.get('detail') or 'failed'}"
        for a in tests.get("assertions", [])
        if isinstance(a, dict) and not a.get("passed")
    )
    return rate, failing


def check_service(
    topology: Topology, svc: ServicePlan, substrate: Substrate, probe: HttpProbe, threshold: float
) -> Check:
    if svc.health is None:
        up, state = substrate.running(topology, svc)
        return Check(service=svc.name, healthy=up, last_response=state)
    base = substrate.endpoint(topology, svc)
    if base is None:
        return Check(service=svc.name, healthy=False, last_response="no endpoint (container not running?)")
    url = base + svc.health
    try:
        code, body = probe.get(url, TIMEOUT_S)
    except OSError as exc:
        return Check(service=svc.name, url=url, healthy=False, last_response=str(exc)[:MAX_RESPONSE])
    if code != 200:
        return Check(
            service=svc.name, url=url, healthy=False, status_code=code, last_response=body[:MAX_RESPONSE]
        )
    try:
        status_code, status_body = probe.get(base + STATUS_PATH, TIMEOUT_S)
    except OSError:
        status_code, status_body = 0, ""
    harness = harness_of(status_body) if status_code == 200 else None
    if harness is None:
        return Check(
            service=svc.name, url=url, healthy=True, status_code=code, last_response=body[:MAX_RESPONSE]
        )
    rate, failing = harness
    return Check(
        service=svc.name,
        url=base + STATUS_PATH,
        healthy=rate >= threshold,
        status_code=status_code,
        pass_rate=rate,
        failing_assertions=failing,
        last_response=status_body[:MAX_RESPONSE],
    )


def verify_release(
    topology: Topology,
    substrate: Substrate,
    probe: HttpProbe,
    config: VerifyConfig,
    sleep: Callable[[float], None],
) -> VerifyResult:
    """Rounds of checks, `delay_s` apart (also before the first: a process that dies at start-up
    must have had time to die); a service passes once and is not asked again."""
    checks: dict[str, Check] = {}
    pending = list(topology.services)
    for _attempt in range(max(1, config.retries)):
        sleep(config.delay_s)
        for svc in pending:
            checks[svc.name] = check_service(topology, svc, substrate, probe, config.pass_threshold)
        pending = [svc for svc in pending if not checks[svc.name].healthy]
        if not pending:
            break
    ordered = tuple(checks[svc.name] for svc in topology.services)
    rates = [c.pass_rate if c.pass_rate is not None else (100.0 if c.healthy else 0.0) for c in ordered]
    pass_rate = round(sum(rates) / len(rates), 1) if rates else 100.0
    return VerifyResult(ordered, pass_rate, all(c.healthy for c in ordered))
