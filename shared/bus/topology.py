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

Each consumer owns a durable quorum queue `kiln.<service>.<purpose>` with two siblings:

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

from shared.platforms import ARCHITECTURES

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

CANCEL_KEY = "build.cancel.requested"


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


def imager_queue(arch: str) -> QueueSpec:
    """Per-architecture job queue: scaling a platform = more workers consuming this queue."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {ARCHITECTURES}")
    return QueueSpec("imager", arch, (f"image.requested.{arch}",), prefetch=1)


COMPILER_BUILDS = QueueSpec("compiler", "builds", ("build.requested",))
IMAGER_MANIFESTS = QueueSpec("imager", "manifests", ("compile.completed", "image.pushed"))
SCANNER_IMAGES = QueueSpec("scanner", "images", ("image.pushed",))
DEPLOYER_GATE = QueueSpec(
    "deployer",
    "gate",
    (
        "build.requested",
        "compile.completed",
        "image.pushed",
        "image.failed",
        "manifest.pushed",
        "scan.completed",
        "build.finished",
        CANCEL_KEY,
    ),
)
# The reporter records everything; it batches, so it takes many messages at a time.
REPORTER_HISTORY = QueueSpec("reporter", "history", ("#",), prefetch=200)
REPORTER_NOTIFY = QueueSpec("reporter", "notify", ("build.requested", "stage.#", "build.finished"))
REPORTER_CDEVENTS = QueueSpec("reporter", "cdevents", ("#",), prefetch=50)
GATEWAY_SUBSCRIPTIONS = QueueSpec("gateway", "subscriptions", ("#",), prefetch=20)
# The HTTP subscriptions' queue feeds outside receivers; it is not a record (event_log is), so a
# stalled receiver may cost bounded broker memory only. drop-head, not reject-publish: the queue
# is bound to `#`, and a publish that one full queue rejects is nacked to its publisher, so
# reject-publish would stall every stage of every build behind one slow HTTP receiver. The
# oldest undelivered events are dropped instead (dead-lettered to the .dlq, where they show).
SUBSCRIPTION_QUEUE_LIMITS: dict[str, object] = {"x-max-length": 10_000, "x-overflow": "drop-head"}

WORK_QUEUES: tuple[QueueSpec, ...] = (
    COMPILER_BUILDS,
    *(imager_queue(arch) for arch in ARCHITECTURES),
    IMAGER_MANIFESTS,
    SCANNER_IMAGES,
    DEPLOYER_GATE,
    REPORTER_HISTORY,
    REPORTER_NOTIFY,
    REPORTER_CDEVENTS,
    GATEWAY_SUBSCRIPTIONS,
)


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
    return f"log.{stage}.{platform.split('/', 1)[1]}" if platform else f"log.{stage}"


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


STAGE_KEYS = ("stage.started", "stage.finished")
CANCEL_WATCH = TransientSpec("cancel", EVENTS_EXCHANGE, (CANCEL_KEY,))
# The gateway republishes stored events for `POST /builds/{id}/replay?from=<stage>`. Any stage
# after the first needs the key of the event that started it (shared.history.STAGE_TRIGGERS):
# a grant that lets the gateway's user publish image.pushed, so the operator opts in to it
# (`provision --allow-stage-replay`); a whole-build replay needs only build.requested.
STAGE_REPLAY_KEYS = ("compile.completed", *image_requested_keys(), "image.pushed")

SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec(
        "gateway",
        queues=(GATEWAY_SUBSCRIPTIONS,),
        transient=(
            TransientSpec("live", EVENTS_EXCHANGE, ("#",)),
            TransientSpec("logs", LOGS_EXCHANGE, ("#",)),
        ),
        publishes=((EVENTS_EXCHANGE, ("build.requested", CANCEL_KEY)),),
    ),
    ServiceSpec(
        "compiler",
        queues=(COMPILER_BUILDS,),
        transient=(CANCEL_WATCH,),
        publishes=(
            (
                EVENTS_EXCHANGE,
                (*STAGE_KEYS, "compile.completed", *image_requested_keys(), "build.finished"),
            ),
            (LOGS_EXCHANGE, tuple(log_routing_key(stage) for stage in ("config", "keys", "compile"))),
        ),
    ),
    ServiceSpec(
        "imager",
        queues=(*(imager_queue(arch) for arch in ARCHITECTURES), IMAGER_MANIFESTS),
        transient=(CANCEL_WATCH,),
        publishes=(
            # build.finished: a job too malformed to name its target ends its build directly.
            (
                EVENTS_EXCHANGE,
                (*STAGE_KEYS, "image.pushed", "image.failed", "manifest.pushed", "build.finished"),
            ),
            (
                LOGS_EXCHANGE,
                tuple(
                    log_routing_key(stage, f"linux/{arch}")
                    for stage in ("image", "push")
                    for arch in ARCHITECTURES
                ),
            ),
        ),
    ),
    ServiceSpec(
        "scanner",
        queues=(SCANNER_IMAGES,),
        transient=(CANCEL_WATCH,),
        publishes=((EVENTS_EXCHANGE, (*STAGE_KEYS, "scan.completed", "audit.completed", "build.finished")),),
    ),
    ServiceSpec(
        "deployer",
        queues=(DEPLOYER_GATE,),
        publishes=(
            (EVENTS_EXCHANGE, (*STAGE_KEYS, "deploy.completed", "verify.completed", "build.finished")),
        ),
    ),
    ServiceSpec(
        "reporter",
        queues=(REPORTER_HISTORY, REPORTER_NOTIFY, REPORTER_CDEVENTS),
        # The CDEvents vocabulary services.reporter.cdevents.translate emits (checked by the unit test).
        publishes=(
            (
                CDEVENTS_EXCHANGE,
                (
                    "pipelinerun.queued",
                    "pipelinerun.started",
                    "pipelinerun.finished",
                    "taskrun.started",
                    "taskrun.finished",
                    "artifact.packaged",
                    "artifact.published",
                    "service.deployed",
                ),
            ),
        ),
    ),
)


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
