"""The one place that wires the attester: settings -> registry, trivy, skopeo, keys, handler.

Not on the bus yet: `Attester.handler` is `on_image_pushed` with its ports bound, for the
stage framework (#15) to register. Tests pass fakes for any port.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.attester import keys as keyfiles
from services.attester.adapters.skopeo import SkopeoSigner
from services.attester.adapters.trivy_sbom import TrivySbom
from services.attester.handlers import SigningKeys, on_image_pushed, on_manifest_pushed
from services.attester.ports import BuildFactsFn, SbomGenerator, SimpleSigner
from services.attester.settings import AttesterSettings
from shared.registry import RegistryClient
from shared.registry.transport import parse_hosts


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


def bootstrap(
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
        attester.index_handler = functools.partial(on_manifest_pushed, **ports)
    return attester
