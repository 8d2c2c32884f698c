"""The config split: a repository's config.yaml (untrusted) may only describe what is built, and is
laid over the operator's config (KILN_CONFIG_PATH); hostile YAML is refused before it is expanded."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from shared.config import ConfigError, load_build_config, load_config
from shared.config.__main__ import main as cli
from shared.config.yaml_source import REPOSITORY_CONFIG_MAX_BYTES

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
OPERATOR = EXAMPLES / "operator" / "config.yaml"
REPOSITORY = EXAMPLES / "monorepo" / "config.yaml"
NO_ENV: dict[str, str] = {}
# 9^6 "lol"s: a few hundred bytes that expand to half a million strings.
ALIAS_BOMB = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    + "".join(
        f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n"
        for prev, name in zip("abcde", "bcdef", strict=True)
    )
    + "packages: {demo: {features: {reports: *f}}}\n"
)


def build(repository: str | bytes | None, env=NO_ENV):
    data = repository.encode() if isinstance(repository, str) else repository
    return load_build_config(OPERATOR, data, env)


def errors_of(repository: str | bytes) -> dict[str, str]:
    with pytest.raises(ConfigError) as failure:
        build(repository)
    return dict(failure.value.errors)


def test_the_example_repository_config_over_the_operator_config_is_the_operator_config():
    merged = build(REPOSITORY.read_bytes())
    assert merged == load_config(OPERATOR, NO_ENV)
    assert build(None) == load_config(OPERATOR, NO_ENV)  # no config.yaml: the operator's description


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("packages: {demo: {deployment: {registry: {host: evil.example:5000}}}}", "packages.demo.deployment"),
        (
            'packages: {demo: {deployment: {base_images: {linux/amd64: "kiln/base:amd64\\nRUN id"}}}}',
            "packages.demo.deployment",
        ),
        ("packages: {demo: {keys: {dir: /tmp/mine}}}", "packages.demo.keys"),
        ("packages: {demo: {scan: {max: {CRITICAL: 99}}}}", "packages.demo.scan"),
        ("packages: {demo: {audit: {modes: [deps], fail_on: []}}}", "packages.demo.audit"),  # a gate's switch
        ("packages: {demo: {raci: {informed: [{email: a@evil.example}]}}}", "packages.demo.raci"),
        ("packages: {demo: {notify: {to: [a@evil.example]}}}", "packages.demo.notify"),
        ("packages: {demo: {webhooks: {clone_url: 'https://evil.example/x.git'}}}", "packages.demo.webhooks"),
        ("packages: {demo: {docs: {wiki: {url: 'https://evil.example'}}}}", "packages.demo.docs"),
        ("version_map: {'*': evil}", "version_map"),
        ("base: {services: {redis: {image: evil/redis}}}", "base"),
        (
            "packages: {demo: {services: {webhook: {node_port: 30080}}}}",
            "packages.demo.services.webhook.node_port",
        ),
        (
            "packages: {demo: {services: {webhook: {dockerfile: Dockerfile}}}}",
            "packages.demo.services.webhook.dockerfile",
        ),
    ],
)
def test_an_operator_key_in_the_repository_is_refused_naming_its_path(text, path):
    errors = errors_of(text)
    assert path in errors, errors
    assert errors[path].startswith(
        "operator only: set it in the operator config (the file at KILN_CONFIG_PATH)"
    )
    assert "config.yaml in the repository, line 1" in errors[path]


def test_an_unknown_key_says_what_the_repository_may_set_there():
    errors = errors_of("packages:\n  demo:\n    servces: {}\n")
    assert errors["packages.demo.servces"] == (
        "unknown key (a repository config may set here: factories, features, compile, services)"
        " (config.yaml in the repository, line 3)"
    )


def test_the_repository_overlays_the_build_keys_of_declared_services_only():
    merged = build(
        "packages:\n  demo:\n    services:\n"
        "      webhook: {command: [python3, -m, webhook.other], replicas: 2}\n"
        "    features: {reports: false}\ntiers:\n  minimal: {requirements: [requirements/report.txt]}\n"
    )
    webhook = merged.package("demo").services["webhook"]
    assert webhook.command == ["python3", "-m", "webhook.other"] and webhook.replicas == 2
    assert (webhook.port, webhook.health, webhook.tier) == (8080, "/healthz", "minimal")  # the operator's
    assert "report" not in merged.package("demo").enabled_services()
    assert merged.tiers["minimal"].requirements == ["requirements/report.txt"]
    assert merged.package("demo").deployment.registry.host == "127.0.0.1:5000"


def test_a_package_or_service_the_operator_did_not_declare_is_refused():
    errors = errors_of("packages:\n  demo:\n    services:\n      miner: {command: [x], tier: minimal}\n")
    assert "is not declared in the operator config" in errors["packages.demo.services.miner"]
    errors = errors_of("packages:\n  other:\n    factories: [core]\n")
    assert "is not in the operator config (known: demo)" in errors["packages.other"]


def test_the_environment_still_wins_over_the_repository():
    text = "packages: {demo: {features: {reports: true}}}"
    merged = build(text, {"KILN_FEATURES_REPORTS": "false"})
    assert merged.package("demo").features == {"reports": False}


def test_a_model_error_of_a_repository_value_points_at_the_repository_line():
    errors = errors_of("packages:\n  demo:\n    services:\n      webhook:\n        port: 99999\n")
    message = errors["packages.demo.services.webhook.port"]
    assert "(config.yaml in the repository, line 5)" in message


@pytest.mark.parametrize(
    ("text", "refusal"),
    [
        (ALIAS_BOMB, "YAML anchors and aliases (&name, *name, <<) are not allowed"),
        ("packages: {demo: {features: !!python/object:os.system {}}}", "YAML tags"),
        ("x: [" * 40 + "]" * 40, "nested deeper than 32 levels"),
        ("factories: {}\n---\nfactories: {}\n", "only one YAML document is allowed"),
    ],
)
def test_hostile_yaml_is_refused_at_once(text, refusal):
    assert 300 < len(ALIAS_BOMB) < 450
    started = time.monotonic()
    errors = errors_of(text)
    assert time.monotonic() - started < 0.5
    assert refusal in errors["<yaml>"], errors


def test_a_file_over_the_size_limit_is_refused_without_parsing():
    big = b"factories:\n" + b"".join(b"  f%d: {path: f%d}\n" % (i, i) for i in range(20000))
    assert len(big) > REPOSITORY_CONFIG_MAX_BYTES
    errors = errors_of(big)
    assert f"a repository config may be at most {REPOSITORY_CONFIG_MAX_BYTES}" in errors["<file>"]


def test_the_operator_may_use_anchors_and_its_base_images_are_validated(tmp_path):
    raw = yaml.safe_load(OPERATOR.read_text())
    raw["packages"]["demo"]["deployment"]["base_images"] = {"linux/amd64": "kiln/base:amd64\nRUN curl x|sh"}
    operator = tmp_path / "config.yaml"
    operator.write_text(
        "x-common: &tier {requirements: []}\n"
        + yaml.safe_dump(raw).replace("tiers:", "tiers:\n  extra: *tier", 1)
    )
    with pytest.raises(ConfigError) as failure:
        load_config(operator, NO_ENV)
    errors = dict(failure.value.errors)
    assert "x-common" in errors  # an unknown top-level key, but the alias itself was read
    message = errors["packages.demo.deployment.base_images.linux/amd64"]
    assert "is not [registry[:port]/]name[:tag][@sha256:digest]" in message


def test_cli_validates_a_repository_config_alone_and_over_an_operator_config(tmp_path, capsys):
    assert cli(["validate", "--repository", str(REPOSITORY)]) == 0
    assert "repository rules only" in capsys.readouterr().out
    assert cli(["validate", "--repository", str(REPOSITORY), "--operator", str(OPERATOR)]) == 0
    assert "package demo: 4 services" in capsys.readouterr().out
    bad = tmp_path / "config.yaml"
    bad.write_text("packages: {demo: {deployment: {substrate: k8s}}}\n")
    assert cli(["validate", "--repository", str(bad)]) == 2
    assert "packages.demo.deployment: operator only" in capsys.readouterr().err
    assert (
        cli(["validate", str(REPOSITORY)]) == 2
    )  # as an operator config it lacks what only the operator sets
