"""The platforms Kiln builds for, as one value type, and the one way to read a branch from a ref.

Every other place that needs a platform list, an architecture name, a pip platform tag or a
compiler triplet derives it from `PLATFORMS` here; a test fails if the strings are typed again
elsewhere (tests/unit/test_platform_single_source.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class Platform:
    """`linux/amd64` and its derived names.

    `arch` is the Docker/OCI architecture (image tag suffixes, queue names, routing keys);
    `machine` is what `uname -m` prints there; `triplet` is the GNU target of its C compiler;
    `pip_platforms` are the wheel platform tags pip may install for it, newest glibc last;
    `repository_suffix` ends the name of its image repository (the seed's `...-arm`; amd64 none)."""

    os: str
    arch: str
    machine: str
    triplet: str
    pip_platforms: tuple[str, ...]
    repository_suffix: str = ""

    @property
    def name(self) -> str:
        return f"{self.os}/{self.arch}"

    @property
    def image_suffix(self) -> str:
        """`-arm64`: what a per-platform image tag ends with (the index has no suffix)."""
        return f"-{self.arch}"

    @property
    def cross_gcc_package(self) -> str:
        """The Debian package of the cross compiler for this platform."""
        return f"gcc-{self.triplet.removesuffix('-linux-gnu').replace('_', '-')}-linux-gnu"

    def python_headers_package(self, python: str) -> str:
        """The Debian multiarch package of CPython `python`'s headers here: `libpython3.13-dev:arm64`."""
        return f"libpython{python}-dev:{self.arch}"

    def python_tag(self, python: str) -> str:
        """The extension-module suffix tag of CPython `python` here: `cpython-313-aarch64-linux-gnu`."""
        return f"cpython-{python.replace('.', '')}-{self.triplet}"

    def __str__(self) -> str:
        return self.name


AMD64 = Platform(
    "linux",
    "amd64",
    "x86_64",
    "x86_64-linux-gnu",
    ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64"),
)
ARM64 = Platform(
    "linux",
    "arm64",
    "aarch64",
    "aarch64-linux-gnu",
    ("manylinux2014_aarch64", "manylinux_2_17_aarch64", "manylinux_2_28_aarch64"),
    repository_suffix="-arm",
)
PLATFORMS: tuple[Platform, ...] = (AMD64, ARM64)
PLATFORM_NAMES: tuple[str, ...] = tuple(p.name for p in PLATFORMS)
ARCHITECTURES: tuple[str, ...] = tuple(p.arch for p in PLATFORMS)
DEFAULT = AMD64  # the platform a setting means when it names none
# The pydantic field type of a platform name: a Literal, so the JSON schema lists the names and
# a wrong value is refused with "Input should be 'linux/amd64' or 'linux/arm64'".
PlatformName = Literal[PLATFORM_NAMES]  # type: ignore[valid-type]
# The same names as a regex, for settings fields that are plain strings.
PLATFORM_PATTERN = "^(" + "|".join(PLATFORM_NAMES) + ")$"


def parse(name: str) -> Platform:
    """Accept `linux/arm64`, `arm64` or `aarch64` (and the amd64 equivalents)."""
    wanted = name.strip().lower()
    for platform in PLATFORMS:
        if wanted in (platform.name, platform.arch, platform.machine):
            return platform
    raise ValueError(f"unsupported platform {name!r}; use one of {', '.join(PLATFORM_NAMES)}")


def host(machine: str | None = None) -> Platform | None:
    """The platform of this machine (`uname -m`), or of `machine`; None for one Kiln does not build."""
    try:
        return parse(machine if machine is not None else os.uname().machine)
    except ValueError:
        return None


def arch_of(platform: str) -> str:
    """`linux/arm64` -> `arm64`."""
    return parse(platform).arch


def per_platform(settings: object, prefix: str) -> dict[str, Any]:
    """`{"linux/amd64": settings.base_image_amd64, ...}` for prefix `base_image_`: the settings
    read per architecture (KILN_BASE_IMAGE_ARM64), keyed by platform name."""
    return {p.name: getattr(settings, f"{prefix}{p.arch}") for p in PLATFORMS}


BRANCH_REF_PREFIX = "refs/heads/"


def branch_of(ref: str) -> str:
    """`refs/heads/feature/x` -> `feature/x`; a bare branch name is returned as it is."""
    return ref.removeprefix(BRANCH_REF_PREFIX)


def is_branch_ref(ref: str) -> bool:
    """`refs/heads/x` names a branch; `x`, `refs/tags/x` and a commit do not."""
    return ref.startswith(BRANCH_REF_PREFIX)


def ref_of(branch: str) -> str:
    """`feature/x` (or `refs/heads/feature/x`) -> `refs/heads/feature/x`."""
    return BRANCH_REF_PREFIX + branch_of(branch)
