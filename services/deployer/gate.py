"""The gate decision, pure: given what the deployer has seen of a build, wait, deploy or fail.

What it has seen is two kinds of rows: the expected images with the reference each was pushed
as (`ImageState`), and facts (`Fact`): one per target x platform x gate stage, from that
stage's `stage.finished` (ok when it succeeded or was skipped), plus a failed `image` fact from
`image.failed`. The gate knows no stage by name: which facts it waits for is a parameter
(`shared.stages.GATE_FACTS` minus what the operator made optional, `DeployerSettings`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from shared.stages import STAGE_ORDER, STAGES, StageSpec, job_of

DEPLOYER = "deployer"  # this service's name in the spec

# image.failed is a fact too: a failed image build fails the gate at once, whatever is required.
IMAGE_FACT = "image"


@dataclass(frozen=True)
class ImageState:
    target: str
    platform: str
    expected: bool
    repository: str | None = None
    digest: str | None = None
    tag: str | None = None

    @property
    def pushed(self) -> bool:
        """image.pushed recorded its reference."""
        return self.repository is not None

    @property
    def reference(self) -> str:
        """What a deployment pins to: the digest when known, else the tag."""
        if self.digest:
            return f"{self.repository}@{self.digest}"
        return f"{self.repository}:{self.tag or 'latest'}"


@dataclass(frozen=True)
class Fact:
    target: str
    platform: str
    fact: str  # the stage's name (or IMAGE_FACT)
    ok: bool
    summary: str | None = None


@dataclass(frozen=True)
class GateDecision:
    action: Literal["wait", "deploy", "fail"]
    failed_stage: str | None = None
    error: str | None = None
    waiting_for: tuple[str, ...] = ()


def gate_facts(stages: Iterable[StageSpec]) -> tuple[str, ...]:
    """The facts a list of stage specs makes every build's gate wait for (`GATE_FACTS` for
    `STAGES`); an optional gate stage only for the packages that turn it on."""
    return tuple(spec.name for spec in stages if spec.gate and not spec.optional)


# What `image.pushed` starts: with skip_push it is never published, so these stages never run.
IMAGE_PUSHED = "image.pushed"


def facts_without_a_push(required: Sequence[str], stages: Iterable[StageSpec] = STAGES) -> tuple[str, ...]:
    """The required facts that can still arrive when the build skips its push: those of the
    stages an `image.pushed` does not trigger (the push itself finishes `skipped`)."""
    after_push = {spec.name for spec in stages if IMAGE_PUSHED in spec.triggers()}
    return tuple(name for name in required if name not in after_push)


def rerun_starts_at(routing_key: str, stage: str | None = None, stages: Sequence[StageSpec] = STAGES) -> str:
    """Where a newer attempt (a replay) reruns the pipeline from, seen from the first of its
    events that reaches the gate: a stage.finished names its stage; an event that triggers
    stages (image.pushed: scan, audit, attest) reruns from the first of them; any other from the
    stage that emits it (image.failed: image)."""
    if stage is not None:
        return stage
    ordered = sorted(stages, key=lambda spec: STAGE_ORDER.get(spec.name, len(STAGE_ORDER)))
    triggered = [spec.name for spec in ordered if routing_key in spec.triggers()]
    emitting = [spec.name for spec in ordered if routing_key in spec.emitted_keys()]
    return (triggered or emitting or [ordered[0].name])[0]


def stale_facts(first_stage: str, stages: Sequence[StageSpec] = STAGES) -> tuple[str, ...]:
    """The facts a rerun from `first_stage` replaces: its own and every later stage's (the image
    fact is the image stage's). A replay from deploy keeps every fact; from scan, the push."""
    start = STAGE_ORDER.get(first_stage, 0)
    return tuple(spec.name for spec in stages if STAGE_ORDER.get(spec.name, 0) >= start)


@dataclass(frozen=True)
class OnlyAttempt:
    """What ends a `kiln replay --only <stage>` attempt that reruns another service's job:
    the gate facts of that job (`required`), and whether it pushes images (`needs_reference`).
    Nothing is deployed: "deploy" then means "done"."""

    required: tuple[str, ...]
    needs_reference: bool


def only_attempt(
    only: str, required: Sequence[str], stages: Sequence[StageSpec] = STAGES
) -> OnlyAttempt | None:
    """None when `only` is one of the deployer's own stages: that attempt deploys as usual."""
    job = job_of(only, tuple(stages))
    if not job or job[0].service == DEPLOYER:
        return None
    return OnlyAttempt(
        required=tuple(spec.name for spec in job if spec.gate and spec.name in required),
        needs_reference=any(IMAGE_PUSHED in spec.emitted_keys() for spec in job),
    )


def decide(
    targets_known: bool,
    images: list[ImageState],
    facts: list[Fact],
    *,
    required: Sequence[str],
    needs_reference: bool = True,
) -> GateDecision:
    """Fail on the first not-ok fact that counts (even before the target list is known: a failure
    is final); deploy when every expected image has a reference and every required fact is ok.
    `needs_reference=False` (a build that skips its push): the required facts are enough, no
    image has a reference to deploy, and "deploy" then means "done".

    A not-ok fact of an optional stage does not count: the operator said the gate does not wait
    for that stage (e.g. no scanner), so its verdict does not stop a deploy either."""
    counted = {IMAGE_FACT, *required}
    for fact in sorted(facts, key=_order):
        if fact.fact in counted and not fact.ok:
            return GateDecision(
                "fail",
                fact.fact,
                f"{fact.fact} of {fact.target} ({fact.platform}) failed: {fact.summary or 'failed'}",
            )
    if not targets_known:
        return GateDecision("wait", waiting_for=("compile.completed",))
    have = {(f.target, f.platform, f.fact) for f in facts if f.ok}
    missing: set[str] = set()
    for image in images:
        if not image.expected:
            continue
        if needs_reference and not image.pushed:  # no reference to deploy yet (image.pushed not seen)
            missing.add(f"{image.target} {image.platform}: push")
        missing.update(
            f"{image.target} {image.platform}: {name}"
            for name in required
            if (image.target, image.platform, name) not in have
        )
    if missing:
        return GateDecision("wait", waiting_for=tuple(sorted(missing)))
    return GateDecision("deploy")


def _order(fact: Fact) -> tuple[str, str, int, str]:
    # Per image in pipeline order, so a failed image build is reported before its missing push.
    return (fact.target, fact.platform, STAGE_ORDER.get(fact.fact, len(STAGE_ORDER)), fact.fact)
