"""The deployer's settings (KILN_DEPLOYER_*), read once at start-up."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from shared.platforms import DEFAULT, PLATFORM_PATTERN
from shared.sources import SourceSettings
from shared.stages import GATE_FACTS, OPTIONAL_GATE_FACTS


class DeployerSettings(SourceSettings):  # provider URLs, KILN_GIT_TOKEN_HOSTS: shared/sources.py
    # Gate stages (shared.stages, gate=True) the gate does not wait for, comma-separated
    # (KILN_DEPLOYER_OPTIONAL_FACTS=scan): a deployment without that stage's service.
    deployer_optional_facts: Annotated[tuple[str, ...], NoDecode] = ()
    # False when a deployment runs without the scanner: the same as listing `scan` above (kept
    # for the deployments that set it).
    deployer_require_scan: bool = True
    # The platform whose images this deployer's substrate runs (the engine's or cluster's arch).
    deployer_platform: str = Field(DEFAULT.name, pattern=PLATFORM_PATTERN)
    # Prefix of every container and network name, so several stacks share one engine safely.
    deployer_name_prefix: str = Field("kiln-", pattern="^[a-z0-9][a-z0-9-]*$")
    deployer_state_dir: str = "~/.kiln/deployer"
    deployer_docker_url: str | None = None
    deployer_kubeconfig: str | None = None
    deployer_supervisor_dir: str = "/etc/supervisor/conf.d"
    # k8s: `helm upgrade --install` when a helm binary is found ("auto"), or always / never.
    deployer_k8s_installer: Literal["auto", "helm", "apply"] = "auto"
    deployer_helm: str = "helm"  # the binary: a name looked up on PATH, or a path
    deployer_helm_timeout_s: int = Field(300, gt=0, le=3600)  # helm --wait --timeout
    # The docs stage clones the build's repository (private ones: the token, through GIT_ASKPASS).
    git_token: SecretStr | None = None
    git_username: str = "x-access-token"
    git_timeout_s: float = Field(300, gt=0)
    deployer_docs_timeout_s: float = Field(300, gt=0)  # one MkDocs build
    # Signature check before a deploy (config deployment.require_signature): the attester's GPG
    # public key (a containers policy `signedBy` keyPath) and where its signatures are read.
    attest_gpg_public_key: str | None = None
    attest_lookaside_dir: str = "~/.kiln/attest/sigstore"
    attest_lookaside_url: str | None = None
    skopeo: str = "skopeo"
    # Where the compiler puts a build's trimmed app config (KILN_ARTIFACT_STORE, as the compiler
    # and imager read it): "host[:port]/project" or "file:///dir"; empty = "{registry}/kiln". The
    # deployer fetches from there only.
    artifact_store: str | None = None

    @field_validator("deployer_optional_facts", mode="before")
    @classmethod
    def _split_facts(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(name.strip() for name in value.split(",") if name.strip())
        return value

    @field_validator("deployer_optional_facts")
    @classmethod
    def _known_facts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        known = (*GATE_FACTS, *OPTIONAL_GATE_FACTS)
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(f"unknown gate facts {', '.join(unknown)}; gate stages: {', '.join(known)}")
        return value

    def required_facts(self, gate_facts: tuple[str, ...] = GATE_FACTS) -> tuple[str, ...]:
        """The facts the gate waits for: every gate stage's but the optional ones."""
        optional = {*self.deployer_optional_facts, *(() if self.deployer_require_scan else ("scan",))}
        return tuple(name for name in gate_facts if name not in optional)

    def package_facts(self, gated_stages: frozenset[str]) -> tuple[str, ...]:
        """The optional gate stages a package turns on (its `gated_stages`) that the gate then
        waits for too, unless the operator made them optional here."""
        return tuple(
            name
            for name in OPTIONAL_GATE_FACTS
            if name in gated_stages and name not in self.deployer_optional_facts
        )
