"""Where a job's tier requirements come from: the artifact first, then the pipeline config.

The artifact may carry `.kiln-tiers.json` ({tier: {requirements: [lines], arm_exclude: [...]}}),
which lets a worker on any host build without the source checkout. Otherwise the tier is read from
config.yaml (KILN_CONFIG_PATH) and its requirement files from the artifact (the compiler copies
data files such as `requirements/*.txt`), falling back to the config's directory.
"""

from __future__ import annotations

import json
from pathlib import Path

from services.imager.build_context import COMPILE_MANIFEST
from services.imager.tier_venv import PythonTag, TierPreparationFailed, TierSpec, parse_requirements
from shared.config.loader import load_config

TIERS_FILE = ".kiln-tiers.json"


def artifact_python(artifact_root: Path) -> PythonTag | None:
    """The CPython the artifact was compiled for (its base image's), which its tier venv must be
    installed for; None for an artifact of a compiler that did not record it (the worker's own)."""
    manifest = artifact_root / COMPILE_MANIFEST
    if not manifest.is_file():
        return None
    try:
        described = json.loads(manifest.read_text(encoding="utf-8"))
    except ValueError:
        raise TierPreparationFailed(f"the artifact's {COMPILE_MANIFEST} is not JSON") from None
    version, abi = described.get("python_version"), described.get("abi")
    if version is None and abi is None:
        return None
    return PythonTag(str(version), str(abi))


def resolve_tier(name: str, artifact_root: Path, config_path: str | None) -> TierSpec:
    bundled = artifact_root / TIERS_FILE
    if bundled.is_file():
        tiers = json.loads(bundled.read_text(encoding="utf-8"))
        if name not in tiers:
            raise TierPreparationFailed(
                f"tier {name!r} is not in the artifact's {TIERS_FILE} (has {sorted(tiers)})"
            )
        entry = tiers[name]
        return TierSpec(name, tuple(entry.get("requirements", ())), tuple(entry.get("arm_exclude", ())))
    if not config_path:
        raise TierPreparationFailed(
            f"tier {name!r}: the artifact has no {TIERS_FILE} and KILN_CONFIG_PATH is not set"
        )
    config = load_config(config_path)
    if name not in config.tiers:
        raise TierPreparationFailed(f"unknown tier {name!r} (config has {sorted(config.tiers)})")
    tier = config.tiers[name]
    lines: list[str] = []
    for relative in tier.requirements:
        candidates = (artifact_root / relative, Path(config_path).parent / relative)
        found = next((path for path in candidates if path.is_file()), None)
        if found is None:
            raise TierPreparationFailed(
                f"tier {name!r}: requirements file {relative} is in neither the artifact nor the config dir"
            )
        lines.extend(parse_requirements(found.read_text(encoding="utf-8"), relative))
    return TierSpec(name, tuple(lines), tuple(tier.arm_exclude))
