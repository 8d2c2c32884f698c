"""The pipeline's config.yaml, validated. Public API:

- `load_config(path, env=os.environ) -> KilnConfig` (raises `ConfigError`, `.errors` = all problems)
- `parse_config(text, env=os.environ, *, source_name, source_dir) -> KilnConfig`
- `load_build_config(operator_path, repository_bytes | None, env) -> KilnConfig` (a build: the
  operator's file with the repository's build description laid over it; see repository.py)
- `trimmed_config(cfg, package) -> dict` (what a package's pods may see)
- `registry_credentials(registry, env) -> tuple[str, str] | None`
- `generate_keys(dir, package, force=False)`, `key_paths(dir, package)`
- CLI: `python -m shared.config validate PATH [--package P] [--repository [--operator OP]]`, `trim`,
  `keys generate`
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.config.errors import ConfigError
from shared.config.keys import generate_keys, key_paths
from shared.config.loader import load_build_config, load_config, parse_config
from shared.config.models import (
    FactoryConfig,
    InfraService,
    KilnConfig,
    PackageConfig,
    ServiceConfig,
    TierConfig,
)
from shared.config.sections import AuditConfig, DeploymentConfig, RegistryConfig, ScanPolicy
from shared.config.trim import trimmed_config


def registry_credentials(registry: RegistryConfig, env: Mapping[str, str]) -> tuple[str, str] | None:
    """(username, password) from the variables `registry.auth_env` names, or None if unset."""
    username = env.get(registry.auth_env.username)
    password = env.get(registry.auth_env.password)
    return (username, password) if username and password else None


__all__ = [
    "AuditConfig",
    "ConfigError",
    "DeploymentConfig",
    "FactoryConfig",
    "InfraService",
    "KilnConfig",
    "PackageConfig",
    "RegistryConfig",
    "ScanPolicy",
    "ServiceConfig",
    "TierConfig",
    "generate_keys",
    "key_paths",
    "load_build_config",
    "load_config",
    "parse_config",
    "registry_credentials",
    "trimmed_config",
]
