"""The example package with its app config on (the block examples/operator/config.yaml shows
commented out): webhook reads database + mqtt, report reads report + database, scheduler and
storage-worker read none; DEMO_DATABASE_PASSWORD comes from the deployer's DEMO_DB_PASSWORD."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from shared.config import KilnConfig, parse_config
from shared.config.app_config import trimmed_document

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "monorepo"
OPERATOR = EXAMPLE.parent / "operator" / "config.yaml"
APP_YAML = EXAMPLE / "config" / "app.yaml"
APP_CONFIG = {"path": "config/app.yaml", "env_prefix": "DEMO", "sections": ["database", "mqtt", "report"]}
READS = {"webhook": ["database", "mqtt"], "report": ["report", "database"]}
SECRETS = {"DEMO_DATABASE_PASSWORD": {"env": "DEMO_DB_PASSWORD"}}


def operator_data(**package: Any) -> dict:
    """The example operator config as data, with app_config on; `package` keys replace the package's."""
    data = yaml.safe_load(OPERATOR.read_text())
    demo = data["packages"]["demo"]
    demo["app_config"] = copy.deepcopy(APP_CONFIG)
    demo["app_secrets"] = copy.deepcopy(SECRETS)
    for service, sections in READS.items():
        demo["services"][service]["app_config_sections"] = list(sections)
    demo.update(package)
    return data


def write_operator(path: Path, data: dict | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data or operator_data(), sort_keys=False))
    return path


def app_config(env: dict[str, str] | None = None, data: dict | None = None) -> KilnConfig:
    return parse_config(yaml.safe_dump(data or operator_data()), {"KILN_KEYS_DIR": "/tmp/k", **(env or {})})


def document(cfg: KilnConfig, text: bytes | None = None) -> str:
    """The package's trimmed app config, as stage config makes it from the example's file."""
    return trimmed_document(text or APP_YAML.read_bytes(), "demo", cfg.package("demo")).decode()
