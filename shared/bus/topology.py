"""Every exchange, queue, binding and dead-letter path of Kiln, in one place.

Names are derived here and nowhere else. Read top to bottom, this module is the map of the
broker:

    kiln.events    (topic)   every event, routing key `<subject>.<predicate>[.<arch>]`
    kiln.cdevents  (topic)   the CDEvents v0.5.1 translation, published by the reporter
    kiln.dlx       (direct)  dead letters; routing key = the queue they died in
    kiln.parking   (topic)   where a consumer parks a message it cannot finish now: routing key =
                             the retry or dead-letter queue it goes to (`<queue>.retry`,
                             `<queue>.dlq`); a topic exchange, so each service's user may write
                             only its own queues' keys (the default exchange reaches any queue)
    kiln.logs      (topic)   live log lines of running stages, routing key `log.<stage>[.<arch>]`;
                             transient messages, no queue of record: a view, dropped when nobody
                             listens (the durable record is the log tail in the stage's events)

Each consumer owns a durable quorum queue `kiln.<service>.<purpose>` with two siblings (below).
The stage services' queues come from the stages (shared.stages.STAGES): a stage's `service` and
`queue` name the queue, its `trigger` is what the queue binds (`stage_queues`); what each such
service publishes is its stages' stage.started/finished, their `emits` and live-log keys
(`stage_service`). Only the consumers that run no stage, and the gate's extra inputs, are
written out by hand (`OTHER_QUEUES`, `STAGE_QUEUE_INPUTS`). Today:

    kiln.compiler.builds      build.requested                 (config, keys, compile)
    kiln.imager.<arch>        image.requested.<arch>          (image, push)
    kiln.scanner.images       image.pushed                    (scan, audit)
    kiln.deployer.gate        compile.completed + gate inputs (topology … docs)
    kiln.imager.manifests     compile.completed, image.pushed (multi-arch manifests, no stage)
    kiln.reporter.*           history, notify, cdevents
    kiln.gateway.subscriptions  `#` for the HTTP subscriptions
    kiln.gateway.concurrency    build.finished, build.cancel.requested (concurrency groups)


    <queue>.retry  classic queue holding messages for their back-off delay; when a message's
                   TTL expires it is dead-lettered through the default exchange straight back
                   to <queue> (not to kiln.events, which would hand it to every subscriber again)
    <queue>.dlq    where a message goes when it can never succeed: invalid, a permanent error,
                   retries exhausted, or the quorum delivery limit hit (consumers kept dying on it)

Who may do what (`SERVICES` below, made into broker users by `shared.bus.permissions`): each
service declares the queues it consumes, the routing keys it publishes on each exchange and the
per-process queues it binds. Its broker user may publish exactly those keys, read exactly its
queues, and configure only its per-process queues; the operator's admin declares the rest once
(`python -m shared.bus provision`).

Consumer timeout: RabbitMQ 3.10 only knows the broker-wide `consumer_timeout` (30 min). Kiln
keeps every job well below it: one message is one image for one platform, or one compile of
one package, never a whole build.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.platforms import ARCHITECTURES, PLATFORMS, arch_of
from shared.stages import (
    ARCH,
    BUILD_FINISHED,
    BUILD_REQUESTED,
    BUILD_WAITING,
    CANCEL_REQUESTED,
    RUN_REQUESTS,
    STAGE_FINISHED,
    STAGE_STARTED,
    STAGES,
    StageSpec,
)

EVENTS_EXCHANGE = "kiln.events"
CDEVENTS_EXCHANGE = "kiln.cdevents"
DEAD_LETTER_EXCHANGE = "kiln.dlx"
LOGS_EXCHANGE = "kiln.logs"
PARKING_EXCHANGE = "kiln.parking"

# RabbitMQ redelivers a message whose consumer died before acking; after this many deliveries
# the quorum queue dead-letters it, so a message that kills its consumer cannot loop forever.
DELIVERY_LIMIT = 5
# Handler failures classified transient are retried this many times, with exponential back-off
# (1, 2, 4 … capped at 60 s: about 3 minutes in all, longer than a database or broker restart).
MAX_RETRIES = 8
RETRY_BASE_DELAY_S = 1.0
RETRY_MAX_DELAY_S = 60.0
# How long a consumer holds a message while its idempotency guard's database is unreachable.
GUARD_WAIT_S = 600.0


CANCEL_KEY = CANCEL_REQUESTED


@dataclass(frozen=True)
class QueueSpec:
    """One consumer's durable work queue and what it is bound to."""

    service: str
    purpose: str
    bindings: tuple[str, ...]
    prefetch: int = 1

    @property
    def name(self) -> str:
        return queue_name(self.service, self.purpose)

    @property
    def retry_queue(self) -> str:
        return f"{self.name}.retry"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.name}.dlq"


def queue_name(service: str, purpose: str) -> str:
    return f"kiln.{service}.{purpose}"


# What a stage service's queue binds besides its stages' triggers: the events its gate or
# bookkeeping reads that start no stage. The deployer's gate also binds stage.finished (derived
# below) whenever some stage is a gate fact (shared.stages.GATE_FACTS).
STAGE_QUEUE_INPUTS: dict[tuple[str, str], tuple[str, ...]] = {
    ("deployer", "gate"): (
        BUILD_REQUESTED,
        "image.pushed",
        "image.failed",
        "manifest.pushed",
        BUILD_FINISHED,
        CANCEL_KEY,
    ),
}


def stage_queues(stages: tuple[StageSpec, ...] = STAGES) -> tuple[QueueSpec, ...]:
    """The stage services' work queues: one per (service, queue purpose) of `stages`, bound to
    their triggers; a purpose `{arch}` is one queue per architecture bound to that arch's key
    (scaling a platform = more workers consuming its queue). Stages sharing a queue share it."""
    bindings: dict[tuple[str, str], list[str]] = {}
    for spec in stages:
        for arch in ARCHITECTURES if ARCH in spec.queue else (None,):
            purpose = spec.queue.replace(ARCH, arch) if arch else spec.queue
            keys = (spec.trigger.replace(ARCH, arch),) if arch else spec.triggers()
            _add(bindings.setdefault((spec.service, purpose), []), (*keys, *spec.also_consumes))
    gate_facts = any(spec.gate for spec in stages)
    for (service, purpose), keys in bindings.items():
        _add(keys, STAGE_QUEUE_INPUTS.get((service, purpose), ()))
        if gate_facts and (service, purpose) == ("deployer", "gate"):
            _add(keys, (STAGE_FINISHED,))
    return tuple(QueueSpec(service, purpose, tuple(keys)) for (service, purpose), keys in bindings.items())


def _add(keys: list[str], more: tuple[str, ...]) -> None:
    keys.extend(key for key in more if key not in keys)


def stage_queue(service: str, purpose: str, stages: tuple[StageSpec, ...] = STAGES) -> QueueSpec:
    for spec in stage_queues(stages):
        if (spec.service, spec.purpose) == (service, purpose):
            return spec
    raise ValueError(f"no stage of {service!r} consumes a queue {purpose!r}")


def imager_queue(arch: str) -> QueueSpec:
    """Per-architecture job queue: scaling a platform = more workers consuming this queue."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {ARCHITECTURES}")
    return stage_queue("imager", arch)


STAGE_QUEUES = stage_queues()
COMPILER_BUILDS = stage_queue("compiler", "builds")
SCANNER_IMAGES = stage_queue("scanner", "images")
DEPLOYER_GATE = stage_queue("deployer", "gate")

# The consumers that run no stage, declared here by hand.
IMAGER_MANIFESTS = QueueSpec("imager", "manifests", ("compile.completed", "image.pushed"))
# The reporter records everything; it batches, so it takes many messages at a time.
REPORTER_HISTORY = QueueSpec("reporter", "history", ("#",), prefetch=200)
REPORTER_NOTIFY = QueueSpec("reporter", "notify", (BUILD_REQUESTED, "stage.#", BUILD_FINISHED))
REPORTER_CDEVENTS = QueueSpec("reporter", "cdevents", ("#",), prefetch=50)
GATEWAY_SUBSCRIPTIONS = QueueSpec("gateway", "subscriptions", ("#",), prefetch=20)
# Concurrency groups (services/gateway/concurrency.py): a build's end frees its slot and starts
# the next held build; a cancel of a held build ends it there (no stage will ever see it).
GATEWAY_CONCURRENCY = QueueSpec("gateway", "concurrency", (BUILD_FINISHED, CANCEL_KEY), prefetch=20)
# The HTTP subscriptions' queue feeds outside receivers; it is not a record (event_log is), so a
# stalled receiver may cost bounded broker memory only. drop-head, not reject-publish: the queue
# is bound to `#`, and a publish that one full queue rejects is nacked to its publisher, so
# reject-publish would stall every stage of every build behind one slow HTTP receiver. The
# oldest undelivered events are dropped instead (dead-lettered to the .dlq, where they show).
SUBSCRIPTION_QUEUE_LIMITS: dict[str, object] = {"x-max-length": 10_000, "x-overflow": "drop-head"}
OTHER_QUEUES: tuple[QueueSpec, ...] = (
    IMAGER_MANIFESTS,
    REPORTER_HISTORY,
    REPORTER_NOTIFY,
    REPORTER_CDEVENTS,
    GATEWAY_SUBSCRIPTIONS,
    GATEWAY_CONCURRENCY,
)

WORK_QUEUES: tuple[QueueSpec, ...] = (*STAGE_QUEUES, *OTHER_QUEUES)


def parking_key(queue: str) -> str:
    """The routing key on kiln.parking of a retry or dead-letter queue: its own name."""
    return queue


def quorum_arguments(spec: QueueSpec) -> dict[str, object]:
    arguments: dict[str, object] = {
        "x-queue-type": "quorum",
        "x-delivery-limit": DELIVERY_LIMIT,
        "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
        "x-dead-letter-routing-key": spec.name,
    }
    if spec == GATEWAY_SUBSCRIPTIONS:
        arguments |= SUBSCRIPTION_QUEUE_LIMITS
    return arguments


def retry_arguments(spec: QueueSpec) -> dict[str, object]:
    return {
        "x-dead-letter-exchange": "",  # the default exchange routes by queue name
        "x-dead-letter-routing-key": spec.name,
    }


def log_routing_key(stage: str, platform: str | None = None) -> str:
    """`log.compile`, `log.image.arm64`: bind `log.#` for every line, `log.*.arm64` for one arch."""
    return f"log.{stage}.{arch_of(platform)}" if platform else f"log.{stage}"


def image_requested_keys() -> tuple[str, ...]:
    return tuple(f"image.requested.{arch}" for arch in ARCHITECTURES)


@dataclass(frozen=True)
class TransientSpec:
    """A per-process queue a service binds itself (exclusive, gone with the process)."""

    purpose: str
    exchange: str
    bindings: tuple[str, ...]


@dataclass(frozen=True)
class ServiceSpec:
    """What one service does on the broker: the source of its broker user's permissions.

    `publishes` maps an exchange to the exact routing keys the service publishes there: its
    handlers' events, its give-up reports, its stage events and live-log lines. A unit test
    (tests/unit/test_bus_permissions.py) checks it against the events the service's code builds."""

    name: str
    queues: tuple[QueueSpec, ...] = ()
    transient: tuple[TransientSpec, ...] = ()
    publishes: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def keys_published(self, exchange: str) -> tuple[str, ...]:
        return next((keys for name, keys in self.publishes if name == exchange), ())


STAGE_KEYS = (STAGE_STARTED, STAGE_FINISHED)
CANCEL_WATCH = TransientSpec("cancel", EVENTS_EXCHANGE, (CANCEL_KEY,))


def stage_replay_keys(stages: tuple[StageSpec, ...] = STAGES) -> tuple[str, ...]:
    """The triggers of every stage but the whole-build one (build.requested, granted anyway)."""
    keys = [key for spec in stages for key in spec.triggers() if key != BUILD_REQUESTED]
    return tuple(dict.fromkeys(keys))


# The gateway republishes stored events for `POST /builds/{id}/replay?from=<stage>`. Any stage
# after the first needs the key of the event that started it (shared.history.STAGE_TRIGGERS):
# a grant that lets the gateway's user publish image.pushed, so the operator opts in to it
# (`provision --allow-stage-replay`); a whole-build replay needs only build.requested.
STAGE_REPLAY_KEYS = stage_replay_keys()


def live_log_keys(spec: StageSpec) -> tuple[str, ...]:
    """`log.<stage>`, or one `log.<stage>.<arch>` per architecture for a per-image stage."""
    if not spec.live_log:
        return ()
    if spec.per_image:
        return tuple(log_routing_key(spec.name, platform.name) for platform in PLATFORMS)
    return (log_routing_key(spec.name),)


def stage_service(
    name: str,
    *,
    extra_queues: tuple[QueueSpec, ...] = (),
    extra_keys: tuple[str, ...] = (BUILD_FINISHED,),
    transient: tuple[TransientSpec, ...] = (CANCEL_WATCH,),
    stages: tuple[StageSpec, ...] = STAGES,
) -> ServiceSpec:
    """A service that runs stages: its queues are its stages' queues; it publishes its stages'
    events and emits, its live-log lines and `extra_keys` (build.finished: the give-up report of
    a job that cannot name its stage ends the build directly)."""
    mine = [spec for spec in stages if spec.service == name]
    emitted = [key for spec in mine for key in spec.emitted_keys()]
    logs = tuple(key for spec in mine for key in live_log_keys(spec))
    publishes = ((EVENTS_EXCHANGE, tuple(dict.fromkeys((*STAGE_KEYS, *emitted, *extra_keys)))),)
    return ServiceSpec(
        name,
        queues=(*(q for q in stage_queues(stages) if q.service == name), *extra_queues),
        transient=transient,
        publishes=publishes + (((LOGS_EXCHANGE, logs),) if logs else ()),
    )


def stage_services(stages: tuple[StageSpec, ...] = STAGES) -> tuple[ServiceSpec, ...]:
    """One ServiceSpec per service that runs a stage, in pipeline order."""
    names = dict.fromkeys(spec.service for spec in stages)
    return tuple(stage_service(name, stages=stages, **STAGE_SERVICE_EXTRAS.get(name, {})) for name in names)


# What a stage service has beyond its stages (keyword arguments of stage_service).
STAGE_SERVICE_EXTRAS: dict[str, dict[str, object]] = {
    "imager": {"extra_queues": (IMAGER_MANIFESTS,)},
    # The deployer's gate runs on the deployer's own queue: no per-process cancel watch.
    "deployer": {"transient": ()},
}

GATEWAY = ServiceSpec(
    "gateway",
    queues=(GATEWAY_SUBSCRIPTIONS, GATEWAY_CONCURRENCY),
    transient=(
        TransientSpec("live", EVENTS_EXCHANGE, ("#",)),
        TransientSpec("logs", LOGS_EXCHANGE, ("#",)),
    ),
    # The requests that start a run (shared.stages.RUN_REQUESTS: a build, a rollback) and cancels;
    # build.waiting: a build its concurrency group holds back. Not build.finished: a held build
    # that is cancelled is ended by the deployer's gate, as every cancelled build is.
    publishes=((EVENTS_EXCHANGE, (*RUN_REQUESTS, BUILD_WAITING, CANCEL_KEY)),),
)


# The CDEvents types the reporter's translation emits for the lifecycle and domain events
# (services/reporter/cdevents/translate.py; the unit test checks the two agree). Every stage maps
# to taskrun.started/finished; a stage's `cdevents` adds the types its success stands for.
CDEVENTS_BASE = (
    "pipelinerun.queued",
    "pipelinerun.started",
    "pipelinerun.finished",
    "taskrun.started",
    "taskrun.finished",
    "artifact.packaged",
    "artifact.published",
    "service.deployed",
)


def cdevents_types(stages: tuple[StageSpec, ...] = STAGES) -> tuple[str, ...]:
    return tuple(dict.fromkeys((*CDEVENTS_BASE, *(t for spec in stages for t in spec.cdevents))))


def reporter_service(stages: tuple[StageSpec, ...] = STAGES) -> ServiceSpec:
    return ServiceSpec(
        "reporter",
        queues=(REPORTER_HISTORY, REPORTER_NOTIFY, REPORTER_CDEVENTS),
        # build.finished: the watchdog ends a build whose stage went silent (reporter/watchdog.py).
        publishes=((EVENTS_EXCHANGE, (BUILD_FINISHED,)), (CDEVENTS_EXCHANGE, cdevents_types(stages))),
    )


def services(stages: tuple[StageSpec, ...] = STAGES) -> tuple[ServiceSpec, ...]:
    """Every service's broker footprint, for `stages` (the gateway, the stage services, the reporter)."""
    return (GATEWAY, *stage_services(stages), reporter_service(stages))


SERVICES: tuple[ServiceSpec, ...] = services()


def service(name: str) -> ServiceSpec:
    for spec in SERVICES:
        if spec.name == name:
            return spec
    raise ValueError(f"unknown service {name!r}; one of {', '.join(s.name for s in SERVICES)}")


def transient_queue_name(service: str, purpose: str, instance: str) -> str:
    """Per-process queues (live views, cancellation signals): exclusive, gone with the process."""
    return f"kiln.{service}.{purpose}.{instance}"


# A live-log queue is a window, not a backlog: a slow reader loses the oldest lines, never the
# broker's memory (and lines older than a minute are no longer "live").
LIVE_LOG_QUEUE_ARGUMENTS: dict[str, object] = {
    "x-max-length": 10_000,
    "x-overflow": "drop-head",
    "x-message-ttl": 60_000,
}


def retry_delay_s(retries_done: int, base_s: float | None = None) -> float:
    return min(RETRY_MAX_DELAY_S, (base_s or RETRY_BASE_DELAY_S) * (2**retries_done))
