"""Every exchange, queue, binding and dead-letter path of Kiln, in one place.

Names are derived here and nowhere else. Read top to bottom, this module is the map of the
broker:

    kiln.events    (topic)   every event, routing key `<subject>.<predicate>[.<arch>]`
    kiln.cdevents  (topic)   the CDEvents v0.5.1 translation, published by the reporter
    kiln.dlx       (direct)  dead letters; routing key = the queue they died in
    kiln.logs      (topic)   live log lines of running stages, routing key `log.<stage>[.<arch>]`;
                             transient messages, no queue of record: a view, dropped when nobody
                             listens (the durable record is the log tail in the stage's events)

Each consumer owns a durable quorum queue `kiln.<service>.<purpose>` with two siblings:

    <queue>.retry  classic queue holding messages for their back-off delay; when a message's
                   TTL expires it is dead-lettered through the default exchange straight back
                   to <queue> (not to kiln.events, which would hand it to every subscriber again)
    <queue>.dlq    where a message goes when it can never succeed: invalid, a permanent error,
                   retries exhausted, or the quorum delivery limit hit (consumers kept dying on it)

Consumer timeout: RabbitMQ 3.10 only knows the broker-wide `consumer_timeout` (30 min). Kiln
keeps every job well below it: one message is one image for one platform, or one compile of
one package, never a whole build.
"""

from __future__ import annotations

from dataclasses import dataclass

EVENTS_EXCHANGE = "kiln.events"
CDEVENTS_EXCHANGE = "kiln.cdevents"
DEAD_LETTER_EXCHANGE = "kiln.dlx"
LOGS_EXCHANGE = "kiln.logs"

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

ARCHITECTURES = ("amd64", "arm64")
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


def transient_queue_name(service: str, purpose: str, instance: str) -> str:
    """Per-process queues (live views, cancellation signals): exclusive, gone with the process."""
    return f"kiln.{service}.{purpose}.{instance}"


def log_routing_key(stage: str, platform: str | None = None) -> str:
    """`log.compile`, `log.image.arm64`: bind `log.#` for every line, `log.*.arm64` for one arch."""
    return f"log.{stage}.{platform.split('/', 1)[1]}" if platform else f"log.{stage}"


# A live-log queue is a window, not a backlog: a slow reader loses the oldest lines, never the
# broker's memory (and lines older than a minute are no longer "live").
LIVE_LOG_QUEUE_ARGUMENTS: dict[str, object] = {
    "x-max-length": 10_000,
    "x-overflow": "drop-head",
    "x-message-ttl": 60_000,
}


def retry_delay_s(retries_done: int, base_s: float | None = None) -> float:
    return min(RETRY_MAX_DELAY_S, (base_s or RETRY_BASE_DELAY_S) * (2**retries_done))
