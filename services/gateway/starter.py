"""Starting builds: number them, publish `build.requested`, and answer only after the confirm.

Exactly-once per redelivery key: keys are reserved (pending, committed) before publishing, and
released when the publish failed, so the sender's retry starts the build. After the broker's
confirm they are marked published in the background: the answer does not wait for that second
commit. It cannot change an answer: until the mark lands the key is pending, and a pending key
is a duplicate for every redelivery (it is taken over only after KILN_PENDING_TAKEOVER_S, the
crash-recovery path, see docs/gateway.md).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field

from anyio import to_thread

from services.gateway.batching import Coalescer
from services.gateway.concurrency import Admission, Candidate, ConcurrencyStore, requested_id
from services.gateway.concurrency_admission import announcement, settle_failures, supersede
from services.gateway.ports import Claim, ClaimRequest, DeliveryLedger, Publisher
from shared.config import KilnConfig
from shared.events import BuildRequested, Envelope
from shared.events.build import Options, Source, Trigger
from shared.naming import DEFAULT_VERSION_MAP, explicit_version
from shared.platforms import branch_of

log = logging.getLogger("kiln.gateway")


class PublishFailed(Exception):
    """The broker did not confirm: answer 503 so the sender retries (nothing is lost)."""


@dataclass(frozen=True)
class BuildOrder:
    package: str
    source: Source
    options: Options = field(default_factory=Options)
    trigger: Trigger = field(default_factory=Trigger)
    # Redelivery key of this order (e.g. repo/ref/commit/package); None: always a new build.
    dedupe_key: str | None = None


@dataclass
class StartResult:
    build_ids: list[str]
    duplicates: int = 0
    # Of build_ids: those held by their concurrency group, and the older builds they superseded.
    waiting: list[str] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)


class BuildStarter:
    def __init__(
        self,
        *,
        publisher: Publisher,
        ledger: DeliveryLedger,
        config: KilnConfig | None,
        groups: ConcurrencyStore | None = None,
    ):
        self._publisher = publisher
        self._ledger = ledger
        self._config = config
        self._groups = groups  # None: no concurrency groups (unit tests without a database)
        self._admit_batch = Coalescer(groups.admit) if groups is not None else None
        # Concurrent requests share database transactions (batching.py); results stay per request.
        self._claim: Coalescer[ClaimRequest, Claim] = Coalescer(ledger.claim)
        self._confirm: Coalescer[str, None] = Coalescer(self._confirm_keys)
        self._confirming: set[asyncio.Task[list[None]]] = set()

    async def start(self, orders: list[BuildOrder], *, delivery_key: str | None = None) -> StartResult:
        request = ClaimRequest(
            delivery_key=delivery_key,
            keys=tuple(o.dedupe_key for o in orders),
            packages=tuple(o.package for o in orders),
        )
        (claim,) = await self._claim.submit([request])
        todo = [o for o, new in zip(orders, claim.fresh, strict=True) if new]
        numbers = [n for n in claim.numbers if n is not None]
        if not todo:  # a redelivery, or every ref already built: nothing to publish
            self._confirm_later([delivery_key] if delivery_key else [])
            return StartResult(build_ids=[], duplicates=len(orders))
        envelopes = [self.envelope(order, number) for order, number in zip(todo, numbers, strict=True)]
        admissions = await self._admit(todo, envelopes)
        outcomes = await self._publish_all(
            [announcement(e, a) for e, a in zip(envelopes, admissions, strict=True)]
        )
        if self._groups is not None:
            outcomes = await settle_failures(self._groups, self._publisher, admissions, outcomes)
        published = [e.buildid for e, r in zip(envelopes, outcomes, strict=True) if r is None]
        ok_keys = [o.dedupe_key for o, r in zip(todo, outcomes, strict=True) if r is None and o.dedupe_key]
        superseded = await supersede(
            self._publisher, [a for a, r in zip(admissions, outcomes, strict=True) if r is None]
        )
        if len(published) < len(envelopes):
            errors = [r for r in outcomes if r is not None]
            log.error("broker refused %d build.requested: %s", len(errors), errors[0])
            failed = [o.dedupe_key for o, r in zip(todo, outcomes, strict=True) if r is not None]
            self._confirm_later(ok_keys)
            await self._release(failed, delivery_key)
            raise PublishFailed(f"broker did not confirm {len(errors)} of {len(envelopes)} build requests")
        self._confirm_later(ok_keys + ([delivery_key] if delivery_key else []))
        return StartResult(
            build_ids=published,
            duplicates=len(orders) - len(todo),
            waiting=[a.build_id for a in admissions if not a.start and a.build_id in published],
            superseded=superseded,
        )

    async def _admit(self, orders: list[BuildOrder], envelopes: list[Envelope]) -> list[Admission]:
        """Each build's place in its concurrency group (start, wait, or start superseding)."""
        if self._groups is None or self._admit_batch is None:
            return [Admission(e.buildid) for e in envelopes]
        candidates = [
            Candidate(
                build_id=e.buildid,
                package=o.package,
                ref=o.source.ref,
                build_number=e.data.get("build_number"),
                request=e.data,
                policy=self._groups.policy_of(o.package),
            )
            for o, e in zip(orders, envelopes, strict=True)
        ]
        return await self._admit_batch.submit(candidates)

    async def _publish_all(self, envelopes: list[Envelope]) -> list[BaseException | None]:
        """Per envelope: None once confirmed, else the error. Most pushes start one build, and
        gather's bookkeeping (a task per call) is a visible share of the handler: skip it for one."""
        if len(envelopes) > 1:
            return await asyncio.gather(
                *(self._publisher.publish(e) for e in envelopes), return_exceptions=True
            )
        try:
            await self._publisher.publish(envelopes[0])
        except Exception as exc:
            return [exc]
        return [None]

    def _confirm_later(self, keys: list[str]) -> None:
        """Mark keys published off the answer's path (batched with other requests' marks)."""
        if keys:
            task = asyncio.create_task(self._confirm.submit(keys))
            self._confirming.add(task)
            task.add_done_callback(self._confirmed)

    def _confirmed(self, task: asyncio.Task[list[None]]) -> None:
        self._confirming.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # The keys stay pending: still duplicates for every redelivery, reusable only after
            # the takeover age, as after a crash.
            log.warning("could not mark redelivery keys published: %s", task.exception())

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Wait for the background marks still running (at shutdown); a database that does not
        answer leaves them pending, the state a crash would leave."""
        if self._confirming:
            await asyncio.wait(set(self._confirming), timeout=timeout_s)

    def _confirm_keys(self, keys: list[str]) -> list[None]:
        self._ledger.confirm(keys)
        return [None] * len(keys)

    async def _release(self, keys: list[str | None], delivery_key: str | None) -> None:
        forget = [k for k in [*keys, delivery_key] if k]
        if forget:
            await to_thread.run_sync(self._ledger.release, forget)

    def envelope(self, order: BuildOrder, number: int) -> Envelope:
        version_map = self._config.version_map if self._config else DEFAULT_VERSION_MAP
        branch = branch_of(order.source.ref).removeprefix("refs/tags/")
        event = BuildRequested(
            package=order.package,
            build_number=number,
            # Only what the branch's own name maps to: an unmapped branch gets the version of
            # the branch it forked from, which the compiler reads from the fetched history.
            version=explicit_version(branch, version_map) if branch else None,
            source=order.source,
            options=order.options,
            trigger=order.trigger,
        )
        build_id = str(uuid.uuid4())
        # The id a release from its concurrency group would give it too (one event either way).
        return Envelope.new(
            event, source="gateway", build_id=build_id, package=order.package, event_id=requested_id(build_id)
        )

    async def number(self, package: str) -> int:
        """The package's next build number for a run that is not a build.requested (a rollback):
        taken from the same counter, so builds and rollbacks share one sequence per package."""
        (claim,) = await self._claim.submit(
            [ClaimRequest(delivery_key=None, keys=(None,), packages=(package,))]
        )
        (number,) = claim.numbers
        assert number is not None
        return number
