"""Environment overrides, the trimmed config, key generation and the CLI."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from shared.config import ConfigError, generate_keys, load_config, registry_credentials
from shared.config import trimmed_config as trim

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "operator" / "config.yaml"


def test_short_form_overrides_a_section_option_in_every_package():
    cfg = load_config(EXAMPLE, {"KILN_DEPLOYMENT_SUBSTRATE": "k8s"})
    assert cfg.package("demo").deployment.substrate == "k8s"


def test_short_form_reaches_nested_options_and_parses_yaml_values(tmp_path):
    env = {
        "KILN_DEPLOYMENT_REGISTRY_HOST": "registry.local:5001",
        "KILN_DEPLOYMENT_VERIFY_PASS_THRESHOLD": "75",
        "KILN_DEPLOYMENT_PLATFORMS": "[linux/arm64]",
        "KILN_SCAN_IGNORE_UNFIXED": "false",
        "KILN_FEATURES_REPORTS": "off",
        "KILN_KEYS_DIR": str(tmp_path),
        "KILN_VERSION_MAP_DEVELOP": "nightly",
    }
    demo_cfg = load_config(EXAMPLE, env)
    demo = demo_cfg.package("demo")
    assert demo.deployment.registry.host == "registry.local:5001"
    assert demo.deployment.verify.pass_threshold == 75
    assert demo.deployment.platforms == ["linux/arm64"]
    assert demo.scan.ignore_unfixed is False
    assert demo.features == {"reports": False}
    assert "report" not in demo.enabled_services()
    assert demo.keys.dir == str(tmp_path)
    assert demo_cfg.version_map["develop"] == "nightly"


def test_path_form_sets_one_exact_key_and_wins_over_short_form():
    env = {
        "KILN_DEPLOYMENT_SUBSTRATE": "supervisor",
        "KILN_PACKAGES__DEMO__DEPLOYMENT__SUBSTRATE": "k8s",
        "KILN_PACKAGES__DEMO__SERVICES__STORAGE_WORKER__REPLICAS": "3",
    }
    demo = load_config(EXAMPLE, env).package("demo")
    assert demo.deployment.substrate == "k8s"
    assert demo.services["storage-worker"].replicas == 3


def test_unrelated_kiln_variables_are_ignored():
    env = {
        "KILN_AMQP_URL": "amqp://x",
        "KILN_CONFIG": "/etc/kiln/config.json",
        "KILN_DB__URL": "mysql://x",
        "KILN_REGISTRY_PASSWORD": "s3cret-value",
    }
    assert load_config(EXAMPLE, env).package("demo").deployment.substrate == "compose"


def test_bad_override_names_the_key_and_the_variable():
    env = {"KILN_DEPLOYMENT_SUBSTRATE": "swarm", "KILN_DEPLOYMENT_SUBSTRAT": "k8s"}
    with pytest.raises(ConfigError) as caught:
        load_config(EXAMPLE, env)
    errors = dict(caught.value.errors)
    assert "KILN_DEPLOYMENT_SUBSTRATE" in errors["packages.demo.deployment.substrate"]
    assert "expected one of: substrate" in errors["KILN_DEPLOYMENT_SUBSTRAT"]


def test_nothing_is_read_from_os_environ_when_env_is_given(monkeypatch):
    monkeypatch.setenv("KILN_DEPLOYMENT_SUBSTRATE", "swarm")
    assert load_config(EXAMPLE, {}).package("demo").deployment.substrate == "compose"


def test_registry_credentials_come_from_the_named_variables():
    registry = load_config(EXAMPLE, {}).package("demo").deployment.registry
    env = {"KILN_REGISTRY_USERNAME": "ci", "KILN_REGISTRY_PASSWORD": "pw"}
    assert registry_credentials(registry, env) == ("ci", "pw")
    assert registry_credentials(registry, {}) is None


def test_trimmed_config_holds_only_what_pods_need():
    trimmed = trim(load_config(EXAMPLE, {}), "demo")
    assert trimmed["package"] == "demo"
    assert set(trimmed["services"]) == {"webhook", "report", "scheduler", "storage-worker"}
    assert trimmed["services"]["webhook"]["port"] == 8080
    assert trimmed["services"]["report"]["enabled"] is True
    assert trimmed["features"] == {"reports": True}
    assert trimmed["version_map"]["main"] == "axion"
    text = json.dumps(trimmed)
    for secret_or_foreign in ("example.com", "raci", "scan", "keys", "registry", "CRITICAL"):
        assert secret_or_foreign not in text


def test_trimmed_config_of_unknown_package_names_the_known_ones():
    with pytest.raises(KeyError, match="known: demo"):
        trim(load_config(EXAMPLE, {}), "other")


def test_generate_keys_writes_a_private_key_only_its_owner_reads(tmp_path):
    private, public = generate_keys(tmp_path / "keys", "demo")
    assert private.name == "demo_private.pem" and public.name == "demo_public.pem"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    key = serialization.load_pem_private_key(private.read_bytes(), password=None)
    assert key.key_size == 2048
    loaded_public = serialization.load_pem_public_key(public.read_bytes())
    assert loaded_public.public_numbers() == key.public_key().public_numbers()
    with pytest.raises(FileExistsError):
        generate_keys(tmp_path / "keys", "demo")


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KILN_")}
    return subprocess.run(
        [sys.executable, "-m", "shared.config", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**clean, **(env or {})},
        timeout=60,
    )


def test_cli_validate_ok():
    result = _cli("validate", str(EXAMPLE), "--package", "demo")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK ")
    assert "package demo: 4 services" in result.stdout


def test_cli_validate_prints_every_error_and_exits_2(tmp_path):
    broken = tmp_path / "config.yaml"
    text = EXAMPLE.read_text().replace("substrate: compose", "substrate: swarm")
    broken.write_text(text.replace("tier: report", "tier: nope"))
    result = _cli("validate", str(broken))
    assert result.returncode == 2
    assert "packages.demo.deployment.substrate: Input should be" in result.stderr
    assert "packages.demo.services.report.tier: unknown tier 'nope'" in result.stderr


def test_cli_env_override_applies(tmp_path):
    result = _cli("trim", str(EXAMPLE), "--package", "demo", env={"KILN_FEATURES_REPORTS": "no"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["features"] == {"reports": False}


def test_cli_keys_generate(tmp_path):
    result = _cli("keys", "generate", "--package", "demo", "--dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "demo_private.pem").is_file()
    assert "PRIVATE KEY" not in result.stdout + result.stderr
    again = _cli("keys", "generate", "--package", "demo", "--dir", str(tmp_path))
    assert again.returncode == 1 and "--force" in again.stderr
