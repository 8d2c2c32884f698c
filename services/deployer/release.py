"""One release: deploy, verify, and on failure roll back to what ran before: its images and its
config (a release that changed only the config is undone too)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from services.deployer.ports import HttpProbe, Release, ReleaseFailed, Substrate, restored_inputs
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
    apply_error: str | None = None
    try:
        detail = substrate.apply(inputs, revision)
    except ReleaseFailed as exc:
        apply_error, detail = str(exc), {**exc.detail, "error": str(exc)}
    revision = int(detail.get("revision", revision))  # a substrate that numbers releases itself (helm)
    deployed = _deploy_event(substrate.name, topology.package, revision, inputs.images, detail)
    if substrate.name == "supervisor":
        return ReleaseOutcome(deployed, None, None, healthy=True)
    result = verify_release(topology, substrate, probe, verify, sleep)
    if apply_error is not None:
        # Checked anyway: the checks and logs say why; but the release is failed whatever they say.
        result = dataclasses.replace(result, healthy=False)
    if result.healthy:
        return ReleaseOutcome(deployed, _verify_event(result), None, healthy=True)
    log_tail = _failing_logs(inputs, substrate, result)
    reasons = [
        f"{c.service}: {', '.join(c.failing_assertions) or c.last_response or 'unhealthy'}"
        for c in result.failing()
    ]
    reason = "; ".join(([apply_error] if apply_error else []) + reasons)
    failed = "deploy failed" if apply_error else "verify failed"
    if previous is None or not previous.images:
        error = f"{failed} ({reason}); no previous release to roll back to"
        return ReleaseOutcome(deployed, _verify_event(result), None, False, error, log_tail)
    restored = restored_inputs(inputs, previous)
    config_restored = (restored.config_json, restored.app_configs) != (inputs.config_json, inputs.app_configs)
    try:
        rollback_detail = substrate.rollback(restored, previous)
        rollback_error = None
    except ReleaseFailed as exc:
        rollback_detail, rollback_error = {**exc.detail, "error": str(exc)}, str(exc)
    after = verify_release(topology, substrate, probe, verify, sleep)
    healthy_after = after.healthy and rollback_error is None
    rollback = _deploy_event(
        substrate.name,
        topology.package,
        previous.revision,
        restored.images,
        {
            **rollback_detail,
            "reason": f"revision {revision}: {failed}",
            "config_restored": config_restored,
            "healthy_after": healthy_after,
        },
        rolled_back=True,
    )
    if healthy_after:
        state = "healthy"
    else:
        why = rollback_error or (after.failing()[0].last_response if after.failing() else "unhealthy")
        state = f"NOT healthy: {why[:200]}"
    error = f"{failed} ({reason}); rolled back to revision {previous.revision}, which is {state}"
    if config_restored:
        error += " (its config restored too)"
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
