"""Imager settings (KILN_*), read once at start-up."""

from __future__ import annotations

from pathlib import Path

from pydantic import ByteSize, Field

from shared.platforms import DEFAULT, PLATFORM_PATTERN
from shared.settings import KilnSettings

DEFAULT_CACHE_MAX_BYTES = 5 * 1024**3


class ImagerSettings(KilnSettings):
    platform: str = Field(DEFAULT.name, pattern=PLATFORM_PATTERN)
    image_builder: str = Field("docker", pattern="^(docker|buildah)$", description="ImageBuilder backend")
    imager_work_dir: Path = Path.home() / ".cache" / "kiln" / "imager"
    # Clean-up (services/imager/cleanup.py): the warm caches under the work dir (tier venvs,
    # artifacts) are cut to this after every job, least recently used first; units as the
    # compiler's KILN_COMPILER_CACHE_MAX_BYTES (`20GiB`, `800MB`, bytes), 0 = unbounded.
    imager_cache_max_bytes: ByteSize = Field(ByteSize(DEFAULT_CACHE_MAX_BYTES), ge=0)
    # Pushed images left in the engine per repository: a deployer on this engine creates its
    # containers from them. 0 on build hosts nobody deploys from.
    imager_keep_pushed: int = Field(1, ge=0, le=100, description="newest pushed images kept per repository")
    # Image jobs one worker runs at once (its queue's prefetch). A build is COPY steps and a proof is
    # mostly waiting, so jobs overlap well beyond the core count: 4 was the fastest measured on 2
    # cores (docs/performance.md). The default stays 1 until a broker restart with several jobs in
    # flight is shown to lose nothing (the fault suite's restart test failed with 4: docs/imager.md).
    imager_concurrency: int = Field(1, ge=1, le=16, description="image jobs this worker runs at once")
    # A proof passed by an image of the same content (layers, start-up config, architecture) is
    # reused instead of run again (services/imager/proof_cache.py); a replay always proves again.
    imager_reuse_proofs: bool = True
    prove_stay_up_s: float = Field(3.0, gt=0, description="a worker must still run after this long")
    prove_timeout_s: float = Field(
        30.0, gt=0, description="an HTTP service must answer its health path by then"
    )
    prove_emulated_factor: float = Field(4.0, ge=1, description="longer windows for images run under QEMU")
    # The operator's defaults, the same variables the compiler reads: a job's base_image must be
    # one of these or the package's deployment.base_images, its artifact in this store.
    base_image_amd64: str | None = None
    base_image_arm64: str | None = None
    artifact_store: str | None = Field(None, description='"host[:port]/project" or "file:///dir"')
    # Where tier packages come from (unset: pip's own configuration) and whether pip may build
    # sdists (their setup code then runs in the sandbox). Operator settings: a repository's
    # requirement lines may only name packages (shared/requirement_lines.py).
    pip_index_url: str | None = None
    pip_allow_sdists: bool = False
    pip_cert: str | None = Field(None, description="CA bundle pip trusts (a TLS-intercepting proxy)")
    # System packages (services/imager/system_layer.py): the apt sources file they come from (its
    # mirror, suites and Signed-By keyring: the base image's Debian release), an apt.conf file for
    # apt's own settings (a proxy; the host's /etc/apt/apt.conf.d is not read), and how old the
    # package lists may get before a job refreshes them (a security update reaches new layers then).
    apt_sources: Path = Path("/etc/apt/sources.list.d/debian.sources")
    apt_config: Path | None = None
    apt_lists_max_age_s: float = Field(86400.0, gt=0)
