"""One release: deploy, verify, and on failure roll back to the images that ran before."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from services.deployer.ports import HttpProbe, Release, Substrate
from services.deployer.scaffold import ScaffoldInputs
from services.deployer.verify import VerifyResult, verify_release
from shared.config.sections import VerifyConfig
from shared.events.deploy import DeployCompleted, DeployedImage, VerifyCompleted


@dataclass(frozen=True)
class ReleaseOutcome:
    deployed: DeployCompleted
    verified: VerifyCompleted | None  # None: the substrate only writes configuration
    rollback: DeployCompleted | None
    healthy: bool
    error: str | None = None
    log_tail: tuple[str, ...] = ()


def run_release(
    inputs: ScaffoldInputs,
    substrate: Substrate,
    probe: HttpProbe,
    verify: VerifyConfig,
    sleep: Callable[[float], None],
) -> ReleaseOutcome:
    topology = inputs.topology
    previous = substrate.current(topology)
    revision = previous.revision + 1 if previous else 1
    detail = substrate.apply(inputs, revision)
    deployed = _deploy_event(substrate.name, topology.package, revision, inputs.images, detail)
    if substrate.name == "supervisor":
        return ReleaseOutcome(deployed, None, None, healthy=True)
    result = verify_release(topology, substrate, probe, verify, sleep)
    if result.healthy:
        return ReleaseOutcome(deployed, _verify_event(result), None, healthy=True)
    log_tail = _failing_logs(inputs, substrate, result)
    reason = "; ".join(
        f"{c.service}: {', '.join(c.failing_assertions) or c.last_response or 'unhealthy'}"
        for c in result.failing()
    )
    if previous is None or not previous.images:
        error = f"verify failed ({reason}); no previous release to roll back to"
        return ReleaseOutcome(deployed, _verify_event(result), None, False, error, log_tail)
    rollback_inputs = dataclasses.replace(inputs, images={**inputs.images, **previous.images})
    rollback_detail = substrate.apply(rollback_inputs, previous.revision)
    after = verify_release(topology, substrate, probe, verify, sleep)
    rollback = _deploy_event(
        substrate.name,
        topology.package,
        previous.revision,
        rollback_inputs.images,
        {**rollback_detail, "reason": f"revision {revision} failed verify", "healthy_after": after.healthy},
        rolled_back=True,
    )
    state = "healthy" if after.healthy else f"NOT healthy: {after.failing()[0].last_response[:200]}"
    error = f"verify failed ({reason}); rolled back to revision {previous.revision}, which is {state}"
    verified = _verify_event(result, rolled_back=True, rollback_revision=previous.revision)
    return ReleaseOutcome(deployed, verified, rollback, False, error, log_tail)


def _deploy_event(substrate: str, package: str, revision: int, images, detail, *, rolled_back=False):
    return DeployCompleted(
        substrate=substrate,  # type: ignore[arg-type]
        release=f"{package}-r{revision}",
        revision=revision,
        images=tuple(DeployedImage(service=s, reference=ref) for s, ref in sorted(images.items())),
        rolled_back=rolled_back,
        detail=detail,
    )


def _verify_event(result: VerifyResult, *, rolled_back=False, rollback_revision=None) -> VerifyCompleted:
    return VerifyCompleted(
        checks=result.checks,
        pass_rate=result.pass_rate,
        healthy=result.healthy,
        rolled_back=rolled_back,
        rollback_revision=rollback_revision,
    )


def _failing_logs(inputs: ScaffoldInputs, substrate: Substrate, result: VerifyResult) -> tuple[str, ...]:
    lines: list[str] = []
    for check in result.failing():
        svc = inputs.topology.service(check.service)
        lines += [f"[{check.service}] {line}" for line in substrate.logs(inputs.topology, svc, 50)]
    return tuple(lines[-50:])


__all__ = ["Release", "ReleaseOutcome", "run_release"]
