"""The compiler service's settings: where sources, caches and artifacts go, and the git token."""

from __future__ import annotations

from pydantic import ByteSize, Field, SecretStr, field_validator

from services.compiler.base_python.store import DEFAULT_MAX_ENTRIES
from services.compiler.engine.cache import DEFAULT_MAX_BYTES
from shared.naming import validate_image_reference
from shared.sources import SourceSettings


class CompilerSettings(SourceSettings):  # provider URLs, KILN_GIT_TOKEN_HOSTS: shared/sources.py
    # Private repositories: handed to git through GIT_ASKPASS, never put in a URL.
    git_token: SecretStr | None = None
    # The user name sent with the token: GitHub takes any (x-access-token), Bitbucket x-token-auth.
    git_username: str = "x-access-token"
    git_timeout_s: float = Field(300, gt=0)
    # The repository's own build description (untrusted, build keys only); the operator's config,
    # which decides everything else, is KILN_CONFIG_PATH (shared settings).
    compiler_config_file: str = Field(
        "config.yaml", description="the repository's config file, relative to the source root"
    )
    # KILN_COMPILER_* (not KILN_COMPILE_*): that prefix is the config's `compile` section override.
    compiler_cache: str | None = Field(None, description="engine cache dir; empty = the engine's default")
    # "5GiB", "800MB" or bytes; 0 = unbounded. ccache gets a tenth of it (docs/compiler.md, "Cache").
    compiler_cache_max_bytes: ByteSize = Field(ByteSize(DEFAULT_MAX_BYTES), ge=0)
    compiler_jobs: int = Field(0, ge=0, description="compile processes; 0 = one per core")
    # "host[:port]/project" (OCI artifacts) or "file:///dir" (one host); empty = "{registry}/kiln".
    artifact_store: str | None = None
    base_image_amd64: str | None = None
    base_image_arm64: str | None = None
    # Build-only images holding CPython headers (include/python3.X) per platform, for base images
    # whose Python ships none (Debian's python3): `ref ref …`, the one with the base's version is
    # used (docs/compiler.md, "Target Python"). Never run, never shipped.
    python_headers_images_amd64: str = ""
    python_headers_images_arm64: str = ""
    # What was read from base and headers images, per manifest digest; empty = the default
    # ${XDG_CACHE_HOME:-~/.cache}/kiln/base-python. Entries, 0 = unbounded.
    compiler_python_cache: str | None = None
    compiler_python_cache_entries: int = Field(DEFAULT_MAX_ENTRIES, ge=0)
    work_dir: str | None = Field(None, description="where sources are fetched; empty = system temp")

    @field_validator("python_headers_images_amd64", "python_headers_images_arm64")
    @classmethod
    def _image_references(cls, value: str) -> str:
        for reference in value.replace(",", " ").split():
            validate_image_reference(reference)
        return value
