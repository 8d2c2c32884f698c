"""`.kiln-tiers.json` and the requirements files, written into each platform's compiled tree so
an imager worker on any host builds a tier venv without the source checkout (see
services/imager/tiers.py for the reading side)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from shared.config import KilnConfig
from shared.requirement_lines import requirement_lines

TIERS_FILE = ".kiln-tiers.json"


class MissingRequirements(ValueError):
    pass


def requirement_files(config: KilnConfig, root: Path) -> dict[str, Path]:
    """Every requirements file the config's tiers name: relative path -> file in the source.
    Each line is checked here, before anything is built (RefusedRequirement names file and line)."""
    files: dict[str, Path] = {}
    for name, tier in config.tiers.items():
        for relative in tier.requirements:
            path = (root / relative).resolve()
            if not path.is_relative_to(root.resolve()) or not path.is_file():
                raise MissingRequirements(f"tier {name}: requirements file {relative} is not in the source")
            requirement_lines(path.read_text(encoding="utf-8"), relative)
            files[relative] = path
    return files


def tiers_document(config: KilnConfig, files: dict[str, Path]) -> dict[str, dict[str, list[str]]]:
    return {
        name: {
            "requirements": [
                line
                for relative in tier.requirements
                for line in requirement_lines(files[relative].read_text(encoding="utf-8"), relative)
            ],
            "arm_exclude": list(tier.arm_exclude),
        }
        for name, tier in sorted(config.tiers.items())
    }


def write_tiers_bundle(out: Path, config: KilnConfig, files: dict[str, Path]) -> None:
    """Add the bundle to a compiled tree (new files only: the tree's other files are cache links)."""
    document = tiers_document(config, files)
    (out / TIERS_FILE).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    for relative, path in files.items():
        target = out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        shutil.copyfile(path, target)
