"""Kiln's own processes, declared once: which processes run, and how each is deployed.

The processes derive from the service and stage specs: one per service of
`shared.bus.topology.SERVICES`, and one per architecture for a service whose stages consume a
per-architecture queue (`{arch}` in a stage's `queue`, as the imager's). What the specs do not
hold (the command line, health port, volumes, secret keys, Docker or bubblewrap) is a
`DeploymentProfile` in `PROFILES`; a plain worker service needs no entry (the defaults).

`python -m scripts.generate` writes docker-compose.yml's Kiln services and the chart's process
lists from these; the dev stack (scripts/stack/layout.py) reads them at run time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.platforms import ARCHITECTURES
from shared.stages import ARCH, STAGES, StageSpec

# What every Kiln pod may read besides its own extras (charts/kiln values.secretKeys).
BASE_SECRET_KEYS = ("KILN_AMQP_URL", "KILN_DATABASE_URL")
REGISTRY_SECRET_KEYS = ("KILN_REGISTRY_USERNAME", "KILN_REGISTRY_PASSWORD")


@dataclass(frozen=True)
class DeploymentProfile:
    """How one service's processes run, beyond what its specs say.

    `args`: after `python -m services.<name>`; `{arch}` is the process's architecture, `{host}`
    and `{port}` the gateway's listen address. `http`: serves HTTP on `{port}` (the gateway),
    checked there instead of a health port. `health_port`: the compose container's
    KILN_HEALTH_PORT (its /readyz is then the healthcheck; else the broker connection is).
    `sandbox`: runs repository code under bubblewrap (seccomp lifted: compose security_opt, the
    chart's values.sandbox). `docker`: talks to the stack's Docker Engine (compose: the engine's
    network namespace). `secret_keys`: the Secret keys its pods get besides BASE_SECRET_KEYS.
    `volumes`, `env`, `depends_on`, `user`, `note`: compose only, as docker-compose.yml has them.
    """

    args: tuple[str, ...] = ()
    http: bool = False
    health_port: int | None = None
    sandbox: bool = False
    docker: bool = False
    secret_keys: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    depends_on: tuple[str, ...] = ()
    user: str | None = None
    note: tuple[str, ...] = ()


PIPELINE_CONFIG = "${KILN_PIPELINE_CONFIG:-./examples/operator/config.yaml}:/etc/kiln/config.yaml:ro"
ATTEST_KEYS = "${KILN_ATTEST_KEYS:-./.kiln/attest}"
DEMO_KEYS = "${KILN_KEYS_ROOT:-./.kiln/keys}/demo:/var/lib/kiln/keys/demo:ro"

PROFILES: dict[str, DeploymentProfile] = {
    "gateway": DeploymentProfile(
        args=("--host", "{host}", "--port", "{port}"),
        http=True,
        note=(
            "Only the gateway checks its secrets (KILN_API_TOKEN, the webhook secrets), so only it",
            'gets them. An empty one (`:-` would pass "") authenticates anyone: compose refuses to',
            "start, and the gateway refuses one shorter than 32 bytes. A provider you do not use",
            "still gets a random secret: its deliveries are then refused, never accepted unsigned",
            "(KILN_ALLOW_UNSIGNED_<PROVIDER>=true is the opt-in).",
        ),
        env=tuple(
            (key, f"${{{key}:?set {key} in .env (openssl rand -hex 32)}}")
            for key in (
                "KILN_API_TOKEN",
                "KILN_BITBUCKET_CLOUD_SECRET",
                "KILN_BITBUCKET_SERVER_SECRET",
                "KILN_GITHUB_SECRET",
            )
        ),
        secret_keys=(
            "KILN_API_TOKEN",
            "KILN_GITHUB_SECRET",
            "KILN_BITBUCKET_CLOUD_SECRET",
            "KILN_BITBUCKET_SERVER_SECRET",
        ),
    ),
    "compiler": DeploymentProfile(
        args=("worker",),
        health_port=8081,
        sandbox=True,
        secret_keys=(*REGISTRY_SECRET_KEYS, "KILN_GIT_TOKEN"),
        volumes=(PIPELINE_CONFIG, DEMO_KEYS, "compile-cache:/var/cache/kiln"),
        note=("Keys: one volume line per package, read-only (stage keys checks the pair exists).",),
    ),
    "imager": DeploymentProfile(
        args=("--platform", "linux/{arch}"),
        sandbox=True,
        docker=True,
        secret_keys=REGISTRY_SECRET_KEYS,
        note=("Image workers per architecture: scale each with --scale imager-amd64=N.",),
    ),
    "scanner": DeploymentProfile(
        secret_keys=REGISTRY_SECRET_KEYS,
        env=(("KILN_TRIVY_CACHE_DIR", "/var/cache/kiln/trivy"),),
        volumes=(PIPELINE_CONFIG, "trivy-cache:/var/cache/kiln"),
    ),
    "attester": DeploymentProfile(
        secret_keys=(*REGISTRY_SECRET_KEYS, "KILN_ATTEST_GPG_PASSPHRASE", "KILN_ATTEST_COSIGN_KEY_PASSWORD"),
        env=(
            ("KILN_TRIVY_CACHE_DIR", "/var/cache/kiln/trivy"),
            ("KILN_ATTEST_GPG_HOME", "/var/lib/kiln/attest/gnupg"),
            ("KILN_ATTEST_GPG_PUBLIC_KEY", "/var/lib/kiln/attest/gpg-public.asc"),
            ("KILN_ATTEST_COSIGN_KEY", "/var/lib/kiln/attest/cosign.key"),
            ("KILN_ATTEST_COSIGN_PUBLIC_KEY", "/var/lib/kiln/attest/cosign.pub"),
            ("KILN_ATTEST_LOOKASIDE_DIR", "/var/lib/kiln/attest/sigstore"),
            (
                "KILN_ATTEST_GPG_FINGERPRINT",
                "${KILN_ATTEST_GPG_FINGERPRINT:?run python -m services.attester keys generate}",
            ),
        ),
        volumes=(
            PIPELINE_CONFIG,
            f"{ATTEST_KEYS}:/var/lib/kiln/attest",
            "trivy-cache:/var/cache/kiln",
        ),
        note=("Signing keys: made once by `python -m services.attester keys generate --dir .kiln/attest`.",),
    ),
    "deployer": DeploymentProfile(
        sandbox=True,
        docker=True,
        secret_keys=(*REGISTRY_SECRET_KEYS, "KILN_GIT_TOKEN", "KILN_WIKI_API_KEY"),
        env=(
            ("KILN_DEPLOYER_STATE_DIR", "/var/lib/kiln/deployer"),
            ("KILN_ATTEST_GPG_PUBLIC_KEY", "/var/lib/kiln/attest/gpg-public.asc"),
            ("KILN_ATTEST_LOOKASIDE_DIR", "/var/lib/kiln/attest/sigstore"),
        ),
        volumes=(
            PIPELINE_CONFIG,
            DEMO_KEYS,
            "deployer-state:/var/lib/kiln/deployer",
            # Public half only: the signature check (deployment.require_signature) reads the
            # GPG public key and the lookaside signatures; the private keys are not mounted.
            f"{ATTEST_KEYS}/gpg-public.asc:/var/lib/kiln/attest/gpg-public.asc:ro",
            f"{ATTEST_KEYS}/sigstore:/var/lib/kiln/attest/sigstore:ro",
        ),
        user="root",
        note=(
            "Root: it writes the release config the engine mounts (the engine's volume, root-owned).",
            "Keys: one volume line per package; the engine mounts the same path (above).",
            "Signatures: the attester's public key and lookaside store, read-only, no private key.",
        ),
    ),
    "reporter": DeploymentProfile(
        secret_keys=(
            "KILN_SMTP_PASSWORD",
            "KILN_GITHUB_TOKEN",
            "KILN_BITBUCKET_CLOUD_TOKEN",
            "KILN_BITBUCKET_SERVER_TOKEN",
        ),
        depends_on=("mailpit",),
    ),
}
DEFAULT_PROFILE = DeploymentProfile()


@dataclass(frozen=True)
class ServiceProcesses:
    """One Kiln service and the processes it runs as (one, or one per architecture)."""

    service: str
    profile: DeploymentProfile
    # The purpose of its per-architecture queue (`{arch}`: `kiln.imager.amd64`), else None.
    arch_queue: str | None = None
    architectures: tuple[str, ...] = field(default=ARCHITECTURES)

    @property
    def per_arch(self) -> bool:
        return self.arch_queue is not None

    def queue(self, arch: str) -> str:
        """The queue the worker of `arch` consumes (a per-architecture service's)."""
        return f"kiln.{self.service}.{(self.arch_queue or '').replace(ARCH, arch)}"

    @property
    def names(self) -> tuple[str, ...]:
        """The process names: `compiler`, or `imager-amd64`, `imager-arm64`."""
        if not self.per_arch:
            return (self.service,)
        return tuple(f"{self.service}-{arch}" for arch in self.architectures)

    @property
    def secret_keys(self) -> tuple[str, ...]:
        return (*BASE_SECRET_KEYS, *self.profile.secret_keys)

    def args(self, arch: str | None = None, host: str = "0.0.0.0", port: int = 8000) -> list[str]:
        """The command after `python`: `-m services.<name> ...`, placeholders filled."""
        values = {"arch": arch or "", "host": host, "port": str(port)}
        return ["-m", f"services.{self.service}", *(a.format(**values) for a in self.profile.args)]


def arch_queue(service: str, stages: tuple[StageSpec, ...] = STAGES) -> str | None:
    """A service consuming a per-architecture queue runs one worker kind per architecture."""
    return next((spec.queue for spec in stages if spec.service == service and ARCH in spec.queue), None)


def service_processes(
    services: tuple[str, ...] | None = None,
    stages: tuple[StageSpec, ...] = STAGES,
    profiles: dict[str, DeploymentProfile] | None = None,
) -> tuple[ServiceProcesses, ...]:
    """Every Kiln service's processes, in the order of `shared.bus.topology.SERVICES`.

    The arguments let a test add a hypothetical service or stage without editing the globals."""
    if services is None:
        from shared.bus.topology import SERVICES

        services = tuple(spec.name for spec in SERVICES)
    profiles = PROFILES if profiles is None else profiles
    return tuple(
        ServiceProcesses(name, profiles.get(name, DEFAULT_PROFILE), arch_queue(name, stages))
        for name in services
    )
