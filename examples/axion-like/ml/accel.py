"""CPU features for choosing kernels. `cpufeature` has x86_64 wheels only, so tier `ai` lists it in
`arm_exclude`: it is imported here, lazily, and an arm64 image (which lacks it) still starts."""

from __future__ import annotations

import platform


def cpu_features() -> dict:
    try:
        import cpufeature  # not in the linux/arm64 image: arm_exclude of tier ai
    except ImportError:
        return {
            "available": False,
            "machine": platform.machine(),
            "reason": "cpufeature is not installed here",
        }
    info = cpufeature.CPUFeature
    return {
        "available": True,
        "machine": platform.machine(),
        "avx2": bool(info.get("AVX2")),
        "avx512f": bool(info.get("AVX512f")),
    }


def expected_availability() -> bool:
    """What the image should hold: cpufeature on x86_64, not on aarch64."""
    return platform.machine() in ("x86_64", "AMD64")
