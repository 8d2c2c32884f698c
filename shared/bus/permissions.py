"""Each service's broker user, derived from `topology.SERVICES` (never a hand-kept list).

RabbitMQ checks three regexes per user and vhost (configure / write / read, matched against
exchange and queue names) and, on topic exchanges, a write regex against the routing key of
every publish and a read regex against the key of every binding a user makes. So a service's
user may:

- configure: only its per-process queues (`kiln.<service>.<purpose>.<instance>`); every
  exchange and durable queue is declared by the operator's admin (`provision`), and services
  declare them passively.
- write: the exchanges it publishes to (kiln.parking for its own retries and dead letters) and
  its per-process queues (binding needs write on the queue). Never the default exchange: it
  routes to any queue by name, around every topic permission.
- read: its own queues, and the exchanges its per-process queues bind to.
- topic write per exchange: exactly the routing keys it publishes; topic read: exactly the keys
  its queues bind. RabbitMQ allows any key on an exchange with no topic permission, so every
  topic exchange gets one, `NOTHING` where the service has no business.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.bus import topology as t

# Matches no resource name (RabbitMQ's own idiom) and no routing key (an empty key would still
# reach every `#` binding, so `^$` is not "nothing" for topics).
NO_RESOURCE = "^$"
NOTHING = "(?!)"
TOPIC_EXCHANGES = (t.EVENTS_EXCHANGE, t.LOGS_EXCHANGE, t.CDEVENTS_EXCHANGE, t.PARKING_EXCHANGE)


@dataclass(frozen=True)
class TopicPermission:
    exchange: str
    write: str
    read: str


@dataclass(frozen=True)
class UserPermissions:
    service: str
    configure: str
    write: str
    read: str
    topics: tuple[TopicPermission, ...]

    def topic(self, exchange: str) -> TopicPermission:
        return next(p for p in self.topics if p.exchange == exchange)


def exactly(names: list[str] | tuple[str, ...], *, nothing: str = NO_RESOURCE) -> str:
    """A regex that matches exactly these names (escaped), or nothing at all."""
    unique = list(dict.fromkeys(names))
    if not unique:
        return nothing
    return "^(" + "|".join(re.escape(name) for name in unique) + ")$"


def transient_pattern(spec: t.ServiceSpec) -> list[str]:
    """Per-process queue names: the instance part is the process's own (any characters)."""
    return [re.escape(t.transient_queue_name(spec.name, tr.purpose, "")) + ".+" for tr in spec.transient]


def _either(exact: list[str], patterns: list[str]) -> str:
    parts = [re.escape(name) for name in dict.fromkeys(exact)] + patterns
    return "^(" + "|".join(parts) + ")$" if parts else NO_RESOURCE


def parking_keys(spec: t.ServiceSpec) -> list[str]:
    return [
        t.parking_key(name) for queue in spec.queues for name in (queue.retry_queue, queue.dead_letter_queue)
    ]


def extra_publishes(spec: t.ServiceSpec, *, allow_stage_replay: bool) -> dict[str, tuple[str, ...]]:
    """Grants the operator opted in to on top of the declared ones."""
    if spec.name == "gateway" and allow_stage_replay:
        return {t.EVENTS_EXCHANGE: t.STAGE_REPLAY_KEYS}
    return {}


def for_service(spec: t.ServiceSpec, *, allow_stage_replay: bool = False) -> UserPermissions:
    extra = extra_publishes(spec, allow_stage_replay=allow_stage_replay)
    writes: dict[str, list[str]] = {
        ex: list(spec.keys_published(ex)) + list(extra.get(ex, ())) for ex in TOPIC_EXCHANGES
    }
    writes[t.PARKING_EXCHANGE] += parking_keys(spec)
    reads: dict[str, list[str]] = {ex: [] for ex in TOPIC_EXCHANGES}
    for queue in spec.queues:
        reads[t.EVENTS_EXCHANGE] += queue.bindings
    for transient in spec.transient:
        reads[transient.exchange] += transient.bindings
    transient = transient_pattern(spec)
    publishes_to = [ex for ex in TOPIC_EXCHANGES if writes[ex]]
    binds_from = [tr.exchange for tr in spec.transient]
    return UserPermissions(
        service=spec.name,
        configure=_either([], transient),
        write=_either(publishes_to, transient),
        read=_either([q.name for q in spec.queues] + binds_from, transient),
        topics=tuple(
            TopicPermission(
                ex, write=exactly(writes[ex], nothing=NOTHING), read=exactly(reads[ex], nothing=NOTHING)
            )
            for ex in TOPIC_EXCHANGES
        ),
    )


def all_services(*, allow_stage_replay: bool = False) -> list[UserPermissions]:
    return [for_service(spec, allow_stage_replay=allow_stage_replay) for spec in t.SERVICES]
