"""A rollback run (`rollback.requested`): redeploy what an earlier build of the package deployed.

The gateway numbers the run and names the build it goes back to; nothing here takes the
event's word for what to deploy. The images (pinned by digest) and the trimmed config come from
the deployer's own record of that build's release (release_log.py), which must be of the same
package, on this deployer's platform, and healthy. Then the normal deploy step runs: the
references are checked against the operator's registry naming, each must still be in the
registry (a pruned image ends the run `failed`: "build N's images were pruned: …"), signatures
are checked exactly as for a build (deployment.require_signature), and the release is deployed
and verified, rolled back automatically when unhealthy. The run ends with its own build.finished.

Idempotency: the run's deployer_build row is claimed (open -> deploying) by the event's id, so a
redelivery of the request redoes its work with the same derived event ids; a duplicate does nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from services.deployer.gate import ImageState
from services.deployer.release_log import RecordedRelease, ReleaseLog
from services.deployer.store import GateStore
from shared.bus import EventContext, TransientError
from shared.events import RollbackRequested
from shared.registry import RegistryClient
from shared.registry.errors import NotFound, RegistryUnavailable

log = logging.getLogger("kiln.deployer")

# (references) -> those no longer in the registry, each with why; raises TransientError when
# the registry cannot be asked (the bus retries: an outage is not a prune).
MissingImages = Callable[[list[str]], list[str]]


@dataclass(frozen=True)
class Rollback:
    """The build a rollback run goes back to, and what it released (or why it cannot)."""

    to_number: int
    to_build_id: str
    release: RecordedRelease | None = None
    problem: str | None = None

    def images(self, platform: str) -> list[ImageState]:
        """The recorded references as the deploy step's image rows."""
        if self.release is None:
            return []
        rows = []
        for service, reference in sorted(self.release.images.items()):
            repository, _, digest = reference.partition("@")
            rows.append(ImageState(service, platform, True, repository=repository, digest=digest or None))
        return rows


def resolve(event: RollbackRequested, ctx: EventContext, releases: ReleaseLog, platform: str) -> Rollback:
    """What build `event.to_build_id` released, if a rollback may redeploy it."""
    number, build_id = event.to_number, event.to_build_id

    def refused(problem: str) -> Rollback:
        return Rollback(number, build_id, problem=problem)

    if ctx.package != event.package:
        return refused(f"the request names package {event.package!r} but is an event of {ctx.package!r}")
    release = releases.get(build_id)
    if release is None:
        return refused(
            f"build #{number} ({build_id}) has no release recorded by this deployer: it was never "
            "deployed (skip_deploy, a failed gate), or was deployed before releases were recorded"
        )
    if release.package != event.package:
        return refused(
            f"build {build_id} is a build of package {release.package!r}, not {event.package!r}: "
            "a rollback redeploys a build of its own package only"
        )
    if not release.healthy:
        return refused(f"build #{number}'s release failed its verify (it was rolled back at the time)")
    if release.platform != platform:
        return refused(f"build #{number} released {release.platform} images; this deployer runs {platform}")
    return Rollback(number, build_id, release)


def on_rollback_requested(
    event: RollbackRequested,
    ctx: EventContext,
    *,
    store: GateStore,
    releases: ReleaseLog,
    deploy: Callable[..., None],
    platform: str,
) -> None:
    store.ensure_build(
        ctx.build_id,
        event.package,
        event.options.model_dump(mode="json"),
        event.source.model_dump(mode="json"),
    )
    build = store.build(ctx.build_id)
    if build is None or not store.claim_deploy(ctx.build_id, ctx.envelope.id):
        return  # already deploying or finished under another event: a duplicate request
    target = resolve(event, ctx, releases, platform)
    log.info("build %s rolls %s back to build #%d (%s)", ctx.build_id, event.package, target.to_number,
             target.to_build_id)  # fmt: skip
    deploy(ctx, build, target.images(platform), rollback=target)


def registry_check(settings) -> MissingImages:
    """Which references are gone from the operator's registry (KILN_REGISTRY_URL and its
    credentials: the registry the imager pushed to), asked by digest."""

    def missing(references: list[str]) -> list[str]:
        gone = []
        with RegistryClient.from_settings(settings) as client:
            for reference in references:
                repository, _, digest = reference.partition("@")
                host, _, path = repository.partition("/")
                if host != client.host:
                    gone.append(f"{reference} (not on {client.host}, the registry KILN_REGISTRY_URL names)")
                    continue
                try:
                    client.get_manifest(path, digest)
                except NotFound:
                    gone.append(reference)
                except RegistryUnavailable as exc:
                    raise TransientError(f"cannot check build images in the registry: {exc}") from exc
        return gone

    return missing
