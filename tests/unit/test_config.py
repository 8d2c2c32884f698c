"""config.yaml validation: the example is valid; each broken variant names its exact key path."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from shared.config import ConfigError, KilnConfig, load_config, parse_config

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "operator" / "config.yaml"
NO_ENV: dict[str, str] = {}


def example_data() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def errors_of(data: dict) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(yaml.safe_dump(data, sort_keys=False), NO_ENV)
    return dict(caught.value.errors)


def test_example_config_is_valid():
    cfg = load_config(EXAMPLE, NO_ENV)
    assert isinstance(cfg, KilnConfig)
    demo = cfg.package("demo")
    assert set(demo.services) == {"webhook", "report", "scheduler", "storage-worker"}
    assert demo.services["webhook"].port == 8080
    assert demo.deployment.platforms == ["linux/amd64", "linux/arm64"]
    assert demo.deployment.registry.host == "127.0.0.1:5000"
    assert demo.keys.dir == "~/.kiln/keys/demo"
    assert demo.raci.active_emails() == ["dev@example.com", "lead@example.com"]
    assert cfg.version_map["develop"] == "meridian"


def test_models_are_frozen():
    cfg = load_config(EXAMPLE, NO_ENV)
    with pytest.raises(ValueError):
        cfg.package("demo").services["webhook"].port = 1  # type: ignore[misc]


def _set(path: str, value: object) -> Callable[[dict], None]:
    def mutate(data: dict) -> None:
        *parents, last = path.split(".")
        node = data
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[last] = value

    return mutate


def _delete(path: str) -> Callable[[dict], None]:
    def mutate(data: dict) -> None:
        *parents, last = path.split(".")
        node = data
        for key in parents:
            node = node[key]
        del node[last]

    return mutate


SERVICES = "packages.demo.services"
BROKEN = [
    ("unknown key", _set(f"{SERVICES}.webhook.colour", "red"), f"{SERVICES}.webhook.colour"),
    ("wrong type", _set(f"{SERVICES}.webhook.replicas", "many"), f"{SERVICES}.webhook.replicas"),
    ("port out of range", _set(f"{SERVICES}.webhook.port", 70000), f"{SERVICES}.webhook.port"),
    ("unknown tier", _set(f"{SERVICES}.report.tier", "nope"), f"{SERVICES}.report.tier"),
    (
        "factory not kept by the package",
        _set("packages.demo.factories", ["core", "report", "webhook"]),
        f"{SERVICES}.storage-worker.factories[1]",
    ),
    (
        "factory not defined at all",
        _set(f"{SERVICES}.scheduler.factories", ["core", "ghost"]),
        f"{SERVICES}.scheduler.factories[1]",
    ),
    (
        "duplicate port",
        lambda d: d["packages"]["demo"]["services"]["report"].update(port=8080),
        f"{SERVICES}.report.port",
    ),
    (
        "bad platform",
        _set("packages.demo.deployment.platforms", ["linux/amd64", "linux/s390x"]),
        "packages.demo.deployment.platforms[1]",
    ),
    (
        "bad substrate",
        _set("packages.demo.deployment.substrate", "swarm"),
        "packages.demo.deployment.substrate",
    ),
    (
        "bad registry type",
        _set("packages.demo.deployment.registry.type", "quay"),
        "packages.demo.deployment.registry.type",
    ),
    (
        "credential in config",
        _set("packages.demo.deployment.registry.password", "hunter2"),
        "packages.demo.deployment.registry.password",
    ),
    (
        "allow-list entry without expiry",
        _set("packages.demo.scan.allow", [{"id": "CVE-2024-12345", "reason": "not reachable"}]),
        "packages.demo.scan.allow[0].expires",
    ),
    (
        "allow-list entry without reason",
        _set("packages.demo.scan.allow", [{"id": "CVE-2024-12345", "expires": "2027-01-01"}]),
        "packages.demo.scan.allow[0].reason",
    ),
    (
        "bad email",
        _set("packages.demo.raci.responsible.email", "dev-at-example"),
        "packages.demo.raci.responsible.email",
    ),
    ("bad version name", _set("version_map.develop", "Meridian!"), "version_map.develop"),
    ("version map without fallback", _delete("version_map.*"), "version_map"),
    (
        "tier and dockerfile together",
        _set(f"{SERVICES}.scheduler.dockerfile", "Dockerfile.scheduler"),
        f"{SERVICES}.scheduler",
    ),
    ("service missing command", _delete(f"{SERVICES}.scheduler.command"), f"{SERVICES}.scheduler.command"),
    (
        "undeclared feature",
        _set(f"{SERVICES}.scheduler.feature", "cron"),
        f"{SERVICES}.scheduler.feature",
    ),
    ("bad node port", _set(f"{SERVICES}.webhook.node_port", 80), f"{SERVICES}.webhook.node_port"),
    ("bad package name", lambda d: d["packages"].update(Demo=d["packages"]["demo"]), "packages.Demo"),
    (
        "volume for unknown service",
        _set("packages.demo.deployment.volumes.data.services", ["nobody"]),
        "packages.demo.deployment.volumes.data.services[0]",
    ),
    (
        "docs mkdocs outside the repo",
        _set("packages.demo.docs.mkdocs", "../x.yml"),
        "packages.demo.docs.mkdocs",
    ),
    (
        "docs mkdocs absolute",
        _set("packages.demo.docs.mkdocs", "/etc/mkdocs.yml"),
        "packages.demo.docs.mkdocs",
    ),
    ("docs bad on_failure", _set("packages.demo.docs.on_failure", "ignore"), "packages.demo.docs.on_failure"),
    (
        "wiki url without scheme",
        _set("packages.demo.docs.wiki.url", "wiki.example.com"),
        "packages.demo.docs.wiki.url",
    ),
    (
        "wiki url with credentials",
        _set("packages.demo.docs.wiki.url", "https://me:pw@wiki.example.com"),
        "packages.demo.docs.wiki.url",
    ),
    ("bad wiki locale", _set("packages.demo.docs.wiki.locale", "English"), "packages.demo.docs.wiki.locale"),
    (
        "bad wiki prefix",
        _set("packages.demo.docs.wiki.path_prefix", "/Docs"),
        "packages.demo.docs.wiki.path_prefix",
    ),
    (
        "api key env not a name",
        _set("packages.demo.docs.wiki.api_key_env", "my key"),
        "packages.demo.docs.wiki.api_key_env",
    ),
]


@pytest.mark.parametrize(("mutate", "path"), [(m, p) for _, m, p in BROKEN], ids=[b[0] for b in BROKEN])
def test_broken_variant_names_its_key_path(mutate, path):
    data = example_data()
    mutate(data)
    errors = errors_of(data)
    assert path in errors, errors


def test_unknown_key_lists_expected_keys():
    data = example_data()
    data["packages"]["demo"]["deployment"]["substrat"] = "k8s"
    message = errors_of(data)["packages.demo.deployment.substrat"]
    assert message.startswith("unknown key (expected one of: substrate, platforms")


def test_all_errors_are_reported_at_once():
    data = example_data()
    originals = copy.deepcopy(data)
    demo = data["packages"]["demo"]
    demo["services"]["webhook"]["port"] = "eighty"  # type error (model)
    demo["services"]["report"]["tier"] = "nope"  # cross-check
    demo["deployment"]["substrate"] = "swarm"  # enum
    demo["raci"]["informed"][0]["email"] = "nobody"  # nested list
    demo["surprise"] = True  # unknown key
    errors = errors_of(data)
    assert {
        f"{SERVICES}.webhook.port",
        f"{SERVICES}.report.tier",
        "packages.demo.deployment.substrate",
        "packages.demo.raci.informed[0].email",
        "packages.demo.surprise",
    } <= set(errors)
    assert originals != data


def test_error_message_carries_the_line_number():
    text = EXAMPLE.read_text().replace("port: 8080", "port: 99999")
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "port: 99999" in row)
    with pytest.raises(ConfigError) as caught:
        parse_config(text, NO_ENV)
    message = dict(caught.value.errors)[f"{SERVICES}.webhook.port"]
    assert f"(line {line})" in message
    assert "65535" in message


def test_yaml_syntax_error_gives_line_and_column():
    text = "packages:\n  demo:\n    services: [unclosed\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, NO_ENV, source_name="broken.yaml")
    [(path, message)] = caught.value.errors
    assert path == "<yaml>"
    assert "broken.yaml: YAML syntax error at line 4, column 1" in message


def test_duplicate_key_is_an_error():
    text = EXAMPLE.read_text().replace("substrate: compose", "substrate: compose\n      substrate: k8s")
    with pytest.raises(ConfigError) as caught:
        parse_config(text, NO_ENV)
    assert "packages.demo.deployment.substrate" in dict(caught.value.errors)


def test_config_error_renders_one_error_per_line():
    error = ConfigError([("a.b", "first"), ("c", "second")])
    assert str(error) == "a.b: first\nc: second"


def test_keys_dir_inside_source_tree_is_refused(tmp_path):
    data = example_data()
    data["packages"]["demo"]["keys"]["dir"] = "keys"
    with pytest.raises(ConfigError) as caught:
        parse_config(yaml.safe_dump(data), NO_ENV, source_dir=tmp_path)
    assert "packages.demo.keys.dir" in dict(caught.value.errors)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml", NO_ENV)


def test_clone_url_refuses_credentials():
    from pydantic import ValidationError

    from shared.config.sections import WebhookConfig

    assert WebhookConfig(clone_url="file:///srv/mirror/mono.git").clone_url == "file:///srv/mirror/mono.git"
    with pytest.raises(ValidationError, match="must not contain credentials"):
        WebhookConfig(clone_url="https://user:hunter22@git.example/mono.git")


def test_an_api_key_in_the_docs_section_points_at_api_key_env():
    data = example_data()
    data["packages"]["demo"]["docs"]["wiki"]["api_key"] = "abc123"
    message = errors_of(data)["packages.demo.docs.wiki.api_key"]
    assert message.startswith("credentials never go in config.yaml: name the environment variable in ")
    assert "docs.wiki.api_key_env" in message


def test_docs_section_is_optional_and_switched_on_from_the_environment():
    assert load_config(EXAMPLE, NO_ENV).package("demo").docs.enabled is False
    data = example_data()
    del data["packages"]["demo"]["docs"]
    assert parse_config(yaml.safe_dump(data), NO_ENV).package("demo").docs is None
    # The short form reaches a package without the section too: built only (no wiki).
    docs = parse_config(yaml.safe_dump(data), {"KILN_DOCS_ENABLED": "true"}).package("demo").docs
    assert docs.enabled and docs.wiki is None and docs.mkdocs == "mkdocs.yml" and docs.on_failure == "warn"
    env = {
        "KILN_DOCS_ENABLED": "true",
        "KILN_DOCS_WIKI_URL": "https://wiki.internal/",
        "KILN_DOCS_ON_FAILURE": "fail",
    }
    docs = load_config(EXAMPLE, env).package("demo").docs
    assert docs.enabled and docs.wiki.url == "https://wiki.internal" and docs.on_failure == "fail"
