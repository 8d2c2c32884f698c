"""The Axion-like example's two config files hold together: the repository's holds build keys only,
the operator's adds the rest; every kept factory is one the code needs (nlp by a computed import,
which static analysis misses on purpose); tiers inherit by listing files, cpufeature left out on
arm64; ai is switched off by the operator's environment alone. A branch asking for operator keys
is refused naming them."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.compiler.tiers_bundle import requirement_files, tiers_document
from services.imager.import_graph import SourceIndex, minimal_factories
from services.imager.tier_venv import TierSpec
from shared.config import ConfigError, load_build_config, load_config, trimmed_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SOURCE = EXAMPLES / "axion-like"
OPERATOR = EXAMPLES / "operator" / "axion-like.yaml"
PACKAGE = "axion-like"


def test_the_repository_config_over_the_operators_is_the_operators():
    repository = (SOURCE / "config.yaml").read_bytes()
    assert load_build_config(OPERATOR, repository, {}) == load_config(OPERATOR, {})


def test_thirteen_services_each_with_a_port_and_a_health_path():
    package = load_config(OPERATOR, {}).package(PACKAGE)
    services = package.services
    assert len(services) == 13 and len({s.port for s in services.values()}) == 13
    assert all(s.health == "/healthz" for s in services.values())
    assert [name for name, s in services.items() if s.node_port] == ["web"]
    assert len(package.factories) >= 15
    assert {name for v in package.deployment.volumes.values() for name in v.services} == {
        "runtime", "workflow", "import", "report",
    }  # fmt: skip
    assert all("_" in name for name in package.deployment.volumes)


def test_kept_factories_are_the_static_imports_plus_nlp_for_conversation():
    package = load_config(OPERATOR, {}).package(PACKAGE)
    index = SourceIndex.scan(SOURCE)
    for name, service in package.services.items():
        needed = set(minimal_factories(index, service.command))
        extra = {"nlp"} if name == "conversation" else set()
        assert set(service.factories) == needed | extra, name
    # the computed import is invisible to the analysis: that is the trap the proof catches
    assert "nlp" not in minimal_factories(index, package.services["conversation"].command)


def test_tiers_inherit_by_file_and_arm64_leaves_cpufeature_out():
    config = load_config(OPERATOR, {})
    tiers = tiers_document(config, requirement_files(config, SOURCE))
    minimal = tiers["minimal"]["requirements"]
    assert tiers["web"]["requirements"][: len(minimal)] == minimal
    assert set(tiers["full"]["requirements"]) == {line for t in tiers.values() for line in t["requirements"]}
    ai = TierSpec("ai", tuple(tiers["ai"]["requirements"]), tuple(tiers["ai"]["arm_exclude"]))
    assert "cpufeature==0.2.1" in ai.lines_for("linux/amd64")
    assert "cpufeature==0.2.1" not in ai.lines_for("linux/arm64")
    assert "numpy==2.1.3" in ai.lines_for("linux/arm64")


def test_ai_off_is_an_operator_environment_override():
    config = load_config(OPERATOR, {"KILN_PACKAGES__AXION_LIKE__FEATURES__AI": "false"})
    assert "ai" not in config.package(PACKAGE).enabled_services()
    assert trimmed_config(config, PACKAGE)["services"]["ai"]["enabled"] is False
    assert len(config.package(PACKAGE).enabled_services()) == 12


@pytest.mark.parametrize(
    ("text", "path"),
    [
        (
            "packages: {axion-like: {services: {go: {node_port: 30081}}}}",
            "packages.axion-like.services.go.node_port",
        ),
        (
            "packages: {axion-like: {deployment: {volumes: {shared_blobs: {mount: /etc}}}}}",
            "packages.axion-like.deployment",
        ),
        ("packages: {axion-like: {raci: {informed: [{email: a@evil.example}]}}}", "packages.axion-like.raci"),
        (
            "packages: {axion-like: {webhooks: {clone_url: 'https://evil.example/x.git'}}}",
            "packages.axion-like.webhooks",
        ),
    ],
)
def test_a_branch_asking_for_operator_keys_is_refused_naming_them(text, path):
    with pytest.raises(ConfigError) as refused:
        load_build_config(OPERATOR, text.encode(), {})
    errors = dict(refused.value.errors)
    assert path in errors and "operator only" in errors[path], errors
