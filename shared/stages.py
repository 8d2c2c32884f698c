"""Every stage of a Kiln build, declared once, in pipeline order.

A stage is data: which service runs it, the event that starts it, what it emits, whether it runs
once per build or once per image (target x platform), whether the deploy gate waits for it, how
long it may take, what it means in CDEvents, and how it is shown. Everything that used to list
stages derives from `STAGES`: the broker's queues and bindings (shared.bus.topology), replay
(shared.history.replay), the deployer's gate, the reporter's projection and email rows, the
CDEvents feed, the CLI's progress lines and the dashboard (served as `/api/catalogue`).

Adding a stage = one entry here + its service folder (docs/architecture.md, "Adding a stage").
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.platforms import ARCHITECTURES

BUILD_REQUESTED = "build.requested"
# A build held back by its package and branch's concurrency group (its build.requested follows).
BUILD_WAITING = "build.waiting"
BUILD_FINISHED = "build.finished"
STAGE_STARTED = "stage.started"
STAGE_FINISHED = "stage.finished"
CANCEL_REQUESTED = "build.cancel.requested"
# A run that redeploys an earlier build's images and config (`kiln rollback`): the deploy stage's.
ROLLBACK_REQUESTED = "rollback.requested"
# What a user asks for through the gateway: each starts a run (its own build id and number).
RUN_REQUESTS = (BUILD_REQUESTED, ROLLBACK_REQUESTED)
ARCH = "{arch}"  # in a queue purpose or routing key: one per architecture


@dataclass(frozen=True)
class StageSpec:
    """One step of a build.

    `trigger` is the routing key of the event whose arrival starts the stage (what a replay of
    the stage republishes); `{arch}` in it or in `queue` means one per architecture. `queue` is
    the purpose of the service's durable queue the trigger is consumed from (`kiln.<service>.
    <queue>`); stages of one service sharing a trigger share the queue. `emits` are the routing
    keys of the domain events the stage publishes besides its own stage.started/finished.

    `per_image`: the stage runs once per target x platform (its stage events name both).
    `gate`: the deployer deploys only when this stage finished `succeeded` (or `skipped`) for
    every expected image; it is a fact row (build, target, platform, fact=<name>, ok, summary).
    `deadline_s`: how long one run of the stage may take before the build is ended as failed.
    `cdevents`: CDEvents types that a succeeded stage.finished also stands for, beyond the
    taskrun.started/finished every stage maps to (the subject is the image in its `detail`).
    `live_log`: the stage streams its output lines on kiln.logs while it runs.
    `also_consumes`: further events its queue binds besides the trigger (the attester also
    signs the multi-arch index on `manifest.pushed`); a replay republishes only the trigger.
    `optional`: runs only when the package's config asks for it (audit modes, docs, a chart's
    topology and scaffold), so the watchdog never waits on it. `optional` and `gate`: the gate
    waits for its fact only for the packages that turn it on (`OPTIONAL_GATE_FACTS`).
    """

    name: str
    service: str
    label: str
    trigger: str
    queue: str
    emits: tuple[str, ...] = ()
    per_image: bool = False
    gate: bool = False
    deadline_s: int = 900
    cdevents: tuple[str, ...] = ()
    live_log: bool = False
    also_consumes: tuple[str, ...] = ()
    optional: bool = False

    def triggers(self) -> tuple[str, ...]:
        """The trigger with `{arch}` expanded: what the queue binds and a replay looks up."""
        return expand(self.trigger)

    def emitted_keys(self) -> tuple[str, ...]:
        return tuple(key for pattern in self.emits for key in expand(pattern))


def expand(pattern: str) -> tuple[str, ...]:
    """`image.requested.{arch}` -> one key per architecture; other patterns as they are."""
    if ARCH not in pattern:
        return (pattern,)
    return tuple(pattern.replace(ARCH, arch) for arch in ARCHITECTURES)


STAGES: tuple[StageSpec, ...] = (
    StageSpec("config", "compiler", "Config", BUILD_REQUESTED, "builds", deadline_s=120, live_log=True),
    StageSpec("keys", "compiler", "Keys", BUILD_REQUESTED, "builds", deadline_s=120, live_log=True),
    StageSpec(
        "compile",
        "compiler",
        "Compile",
        BUILD_REQUESTED,
        "builds",
        emits=("compile.completed", "image.requested.{arch}"),
        deadline_s=1800,
        live_log=True,
    ),
    StageSpec(
        "image",
        "imager",
        "Image",
        "image.requested.{arch}",
        ARCH,
        emits=("image.failed",),
        per_image=True,
        deadline_s=1800,
        live_log=True,
    ),
    StageSpec(
        "push",
        "imager",
        "Push",
        "image.requested.{arch}",
        ARCH,
        emits=("image.pushed", "manifest.pushed"),
        per_image=True,
        gate=True,
        deadline_s=900,
        live_log=True,
    ),
    StageSpec(
        "scan",
        "scanner",
        "Scan",
        "image.pushed",
        "images",
        emits=("scan.completed",),
        per_image=True,
        gate=True,
        deadline_s=900,
    ),
    # The package's audit modes (operator config `audit`) on every pushed image; a gate fact only
    # for the packages that run audits (`optional` + `gate`), so other builds never wait on it.
    StageSpec(
        "audit",
        "scanner",
        "Audit",
        "image.pushed",
        "images",
        emits=("audit.completed",),
        per_image=True,
        gate=True,
        deadline_s=600,
        optional=True,
    ),
    # SBOM, GPG + cosign signatures and SLSA provenance of every pushed image (and of each
    # multi-arch index), stored beside it in the registry; the deployer deploys only attested
    # images (services/attester, docs/attest.md).
    StageSpec(
        "attest",
        "attester",
        "Attest",
        "image.pushed",
        "images",
        per_image=True,
        gate=True,
        deadline_s=600,
        cdevents=("artifact.signed",),
        also_consumes=("manifest.pushed",),
    ),
    StageSpec("topology", "deployer", "Topology", "compile.completed", "gate", deadline_s=300, optional=True),
    StageSpec("scaffold", "deployer", "Scaffold", "compile.completed", "gate", deadline_s=300, optional=True),
    StageSpec(
        "deploy",
        "deployer",
        "Deploy",
        "compile.completed",
        "gate",
        emits=("deploy.completed",),
        deadline_s=900,
        # A rollback run starts here: no compile, no images of its own (services/deployer/rollback.py).
        also_consumes=(ROLLBACK_REQUESTED,),
    ),
    StageSpec(
        "verify",
        "deployer",
        "Verify",
        "compile.completed",
        "gate",
        emits=("verify.completed",),
        deadline_s=600,
    ),
    StageSpec("docs", "deployer", "Docs", "compile.completed", "gate", deadline_s=600, optional=True),
)

STAGE_NAMES: tuple[str, ...] = tuple(spec.name for spec in STAGES)
STAGE_ORDER: dict[str, int] = {name: index for index, name in enumerate(STAGE_NAMES)}
FIRST_STAGE = STAGES[0].name
# What every build's deploy waits for; an optional gate stage only when the package turns it on
# (shared.config PackageConfig.gated_stages). The gate records the facts of both.
GATE_FACTS: tuple[str, ...] = tuple(spec.name for spec in STAGES if spec.gate and not spec.optional)
OPTIONAL_GATE_FACTS: tuple[str, ...] = tuple(spec.name for spec in STAGES if spec.gate and spec.optional)


def stage(name: str) -> StageSpec:
    for spec in STAGES:
        if spec.name == name:
            return spec
    raise ValueError(f"unknown stage {name!r}; one of {', '.join(STAGE_NAMES)}")


def label_of(name: str, stages: tuple[StageSpec, ...] | None = None) -> str:
    """A stage's label; a name the spec no longer knows (an old build's row) as it is."""
    return next((spec.label for spec in (STAGES if stages is None else stages) if spec.name == name), name)


def job_of(name: str, stages: tuple[StageSpec, ...] | None = None) -> tuple[StageSpec, ...]:
    """The stages that run as one job with stage `name`: one service's stages started by the
    same trigger (config, keys and compile; image and push; scan and audit; the deployer's).
    A `kiln replay --only <stage>` reruns that whole job, nothing after it."""
    stages = STAGES if stages is None else stages
    spec = next((s for s in stages if s.name == name), None)
    if spec is None:
        return ()
    return tuple(s for s in stages if s.service == spec.service and s.trigger == spec.trigger)


def in_replay_scope(stage_name: str, only: str | None, stages: tuple[StageSpec, ...] | None = None) -> bool:
    """Does `stage_name` run for an event of an attempt restricted to `only` (None: every stage)?"""
    return only is None or any(spec.name == stage_name for spec in job_of(only, stages))


def stages_started_by(
    service: str, routing_key: str, stages: tuple[StageSpec, ...] | None = None
) -> tuple[str, ...]:
    """The stages of `service` an event with this routing key starts (its trigger, or an event
    its queue also consumes: the attester's manifest.pushed)."""
    return tuple(
        spec.name
        for spec in (STAGES if stages is None else stages)
        if spec.service == service
        and (routing_key in spec.triggers() or any(routing_key in expand(k) for k in spec.also_consumes))
    )


def stages_of(service: str) -> tuple[StageSpec, ...]:
    return tuple(spec for spec in STAGES if spec.service == service)


def stage_emitting(key: str, stages: tuple[StageSpec, ...] | None = None) -> StageSpec:
    """The stage whose `emits` include routing key `key`."""
    for spec in STAGES if stages is None else stages:
        if key in spec.emitted_keys():
            return spec
    raise ValueError(f"no stage emits {key!r}")


def routing_keys(stages: tuple[StageSpec, ...] | None = None) -> tuple[str, ...]:
    """Every routing key on kiln.events a build's stream may carry: the lifecycle and the stages'
    domain events, each once, in pipeline order (cancellation and the end last)."""
    emitted = (key for spec in (STAGES if stages is None else stages) for key in spec.emitted_keys())
    return tuple(
        dict.fromkeys(
            (
                BUILD_WAITING,
                *RUN_REQUESTS,
                STAGE_STARTED,
                STAGE_FINISHED,
                *emitted,
                CANCEL_REQUESTED,
                BUILD_FINISHED,
            )
        )
    )


def catalogue(stages: tuple[StageSpec, ...] | None = None) -> dict[str, object]:
    """What clients (the dashboard, the CLI) need to know about stages, as JSON-ready data."""
    stages = STAGES if stages is None else stages
    return {
        "stages": [
            {
                "name": spec.name,
                "label": spec.label,
                "order": index,
                "service": spec.service,
                "per_image": spec.per_image,
                "gate": spec.gate,
                "trigger": spec.trigger,
                "emits": list(spec.emitted_keys()),
            }
            for index, spec in enumerate(stages)
        ],
        "architectures": list(ARCHITECTURES),
        "lifecycle": [
            BUILD_WAITING,
            *RUN_REQUESTS,
            STAGE_STARTED,
            STAGE_FINISHED,
            CANCEL_REQUESTED,
            BUILD_FINISHED,
        ],
    }
