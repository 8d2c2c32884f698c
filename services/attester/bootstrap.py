"""The one place that wires the attester: settings -> registry, trivy, skopeo, keys, handlers.

`bootstrap(settings)` is the worker (the shared Worker shape: its queue from the `attest`
StageSpec, image.pushed and manifest.pushed handlers, the idempotency guard, a give-up that ends
the build); `parts(settings)` gives the commands (`keys`, `verify`) what they need without a
database. Tests pass fakes for any port.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.attester import keys as keyfiles
from services.attester.adapters.trivy_sbom import TrivySbom
from services.attester.facts import config_digest_from, facts_from_history
from services.attester.handlers import STAGE, SigningKeys, on_image_pushed, on_manifest_pushed
from services.attester.ports import BuildFactsFn, SbomGenerator, SimpleSigner
from services.attester.settings import AttesterSettings
from shared.bus import SqlIdempotencyGuard
from shared.bus import topology as t
from shared.bus.cancellation import CancelWatch
from shared.bus.dispatch import HandlerTable
from shared.bus.give_up import end_build_failed
from shared.bus.idempotency import IdempotencyGuard
from shared.bus.worker import Consumer, Worker
from shared.events import ImagePushed, ManifestPushed
from shared.registry import RegistryClient
from shared.registry.transport import parse_hosts
from shared.skopeo import SkopeoSigner

SOURCE = "attester"


@dataclass
class Attester:
    settings: AttesterSettings
    registry: RegistryClient
    sbom: SbomGenerator
    signer: SimpleSigner
    handler: Callable[..., Any] | None = None  # image.pushed
    index_handler: Callable[..., Any] | None = None  # manifest.pushed


def registry_credentials(settings: AttesterSettings) -> tuple[str, str] | None:
    if settings.registry_username and settings.registry_password:
        return settings.registry_username, settings.registry_password.get_secret_value()
    return None


def make_signer(settings: AttesterSettings) -> SkopeoSigner:
    return SkopeoSigner(
        lookaside_dir=settings.path(settings.attest_lookaside_dir),
        lookaside_url=settings.attest_lookaside_url,
        binary=settings.skopeo,
        registry_credentials=registry_credentials(settings),
        insecure_hosts=parse_hosts(settings.registry_insecure_hosts),
    )


def load_signing_keys(settings: AttesterSettings) -> SigningKeys:
    if not settings.attest_gpg_fingerprint:
        raise keyfiles.KeyProblem(
            "KILN_ATTEST_GPG_FINGERPRINT is not set: "
            "run `python -m services.attester keys generate --dir DIR`"
        )
    password = settings.attest_cosign_key_password
    gpg_passphrase = settings.attest_gpg_passphrase
    return SigningKeys(
        gpg_home=settings.path(settings.attest_gpg_home),
        gpg_fingerprint=settings.attest_gpg_fingerprint,
        cosign_key=keyfiles.load_private_key(
            settings.path(settings.attest_cosign_key), password.get_secret_value() if password else None
        ),
        gpg_passphrase=gpg_passphrase.get_secret_value() if gpg_passphrase else None,
    )


def parts(
    settings: AttesterSettings,
    *,
    build_facts: BuildFactsFn | None = None,
    registry: RegistryClient | None = None,
    sbom: SbomGenerator | None = None,
    signer: SimpleSigner | None = None,
    signing_keys: SigningKeys | None = None,
) -> Attester:
    registry = registry or RegistryClient.from_settings(settings)
    sbom = sbom or TrivySbom(
        settings.trivy,
        settings.trivy_cache_dir,
        timeout_s=settings.trivy_timeout_s,
        registry_credentials=registry_credentials(settings),
        insecure_hosts=parse_hosts(settings.registry_insecure_hosts),
    )
    signer = signer or make_signer(settings)
    attester = Attester(settings, registry, sbom, signer)
    if build_facts is not None:
        ports = {
            "registry": registry,
            "signer": signer,
            "keys": signing_keys or load_signing_keys(settings),
            "build_facts": build_facts,
            "builder_id": settings.attest_builder_id,
        }
        attester.handler = functools.partial(on_image_pushed, sbom_generator=sbom, **ports)
        attester.index_handler = functools.partial(on_manifest_pushed, sbom_generator=sbom, **ports)
    return attester


def bootstrap(
    settings: AttesterSettings,
    *,
    build_facts: BuildFactsFn | None = None,
    guard: IdempotencyGuard | None = None,
    **ports: Any,
) -> Worker:
    """The attester's worker: one queue (`kiln.attester.images`, derived from its StageSpec)."""
    sessions = None
    if build_facts is None or guard is None:
        from shared.db import make_engine, make_sessions

        sessions = make_sessions(make_engine(settings.database_url))
    facts = build_facts or facts_from_history(sessions, config_digest_from(settings.config_path))
    attester = parts(settings, build_facts=facts, **ports)
    cancel = CancelWatch()
    handlers: HandlerTable = {
        ImagePushed: _unless_cancelled(attester.handler, cancel),
        ManifestPushed: _unless_cancelled(attester.index_handler, cancel),
    }
    return Worker(
        source=SOURCE,
        settings=settings,
        consumers=[
            Consumer(
                t.service(SOURCE).queues[0],
                handlers,
                give_up=dict.fromkeys(handlers, end_build_failed(STAGE)),
            )
        ],
        guard=guard or SqlIdempotencyGuard(sessions),
        cancel=cancel,
        health_port=settings.health_port,
        parts={"attester": attester},
    )


def _unless_cancelled(handler: Callable[..., Any], cancel: CancelWatch) -> Callable[..., Any]:
    """A cancelled build's images are not attested (its build.finished is already out)."""

    def attest_unless_cancelled(event: Any, ctx: Any) -> Any:
        if cancel.is_cancelled(ctx.build_id, ctx.envelope.attempt):
            return None
        return handler(event, ctx)

    return attest_unless_cancelled
