"""`system_packages` on a tier and on a service: Debian package names only, set by the operator only.

A hostile value (a version, an option, a URL, a path, a glob, a line break) is refused at stage
config naming the key; a repository's config.yaml that sets either key is refused as operator only.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from shared.config import ConfigError, load_build_config, parse_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
OPERATOR = EXAMPLES / "operator" / "config.yaml"
NO_ENV: dict[str, str] = {}
NAME_HELP = "must be a Debian package name like imagemagick"


def operator_with(tier_packages: list, service_packages: list) -> dict:
    data = yaml.safe_load(OPERATOR.read_text())
    data["tiers"]["minimal"]["system_packages"] = tier_packages
    data["packages"]["demo"]["services"]["webhook"]["system_packages"] = service_packages
    return data


def errors_of(data: dict) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(yaml.safe_dump(data, sort_keys=False), NO_ENV)
    return dict(caught.value.errors)


def test_debian_names_are_accepted_on_a_tier_and_a_service():
    config = parse_config(
        yaml.safe_dump(operator_with(["imagemagick", "libstdc++6"], ["g++", "python3.11", "chromium"])),
        NO_ENV,
    )
    assert config.tiers["minimal"].system_packages == ["imagemagick", "libstdc++6"]
    assert config.package("demo").services["webhook"].system_packages == ["g++", "python3.11", "chromium"]
    assert config.package("demo").services["report"].system_packages == []  # the default: none


@pytest.mark.parametrize(
    "hostile",
    [
        "imagemagick=8:6.9.11",  # a version
        "curl/bookworm-backports",  # a suite
        "libc6:arm64",  # an architecture
        "-oAPT::Get::AllowUnauthenticated=true",  # an apt option
        "--allow-unauthenticated",
        "http://evil.example/x.deb",  # a URL
        "/tmp/evil.deb",  # a path
        "../evil",
        "libc6-",  # apt-get reads a trailing '-' as "remove libc6"
        "lib*",  # a glob
        "imagemagick\nRUN id",  # a line break into the Dockerfile comment
        "$(id)",
        "ImageMagick",  # Debian names are lowercase
        "a",  # at least two characters
    ],
)
def test_a_hostile_name_is_refused_naming_the_key(hostile):
    errors = errors_of(operator_with(["imagemagick", hostile], [hostile]))
    assert errors["tiers.minimal.system_packages[1]"].startswith(NAME_HELP), errors
    assert f"(got {hostile!r})" in errors["tiers.minimal.system_packages[1]"]
    assert "packages.demo.services.webhook.system_packages[0]" in errors
    assert "tiers.minimal.system_packages[0]" not in errors  # the good name beside it is fine


def test_names_and_the_list_are_bounded():
    errors = errors_of(operator_with([f"pkg{n}" for n in range(201)], ["x" * 101]))
    assert "at most 200" in errors["tiers.minimal.system_packages"]
    assert "at most 100 characters" in errors["packages.demo.services.webhook.system_packages[0]"]


def test_a_plain_dockerfile_service_installs_its_own():
    data = yaml.safe_load(OPERATOR.read_text())
    webhook = data["packages"]["demo"]["services"]["webhook"]
    webhook.pop("tier")
    webhook.update(dockerfile="Dockerfile", system_packages=["imagemagick"])
    errors = errors_of(data)
    assert "system_packages is for compiled builds (tier)" in errors["packages.demo.services.webhook"]


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("tiers: {minimal: {system_packages: [imagemagick]}}", "tiers.minimal.system_packages"),
        ("tiers: {mine: {system_packages: [openssh-server]}}", "tiers.mine.system_packages"),
        (
            "packages: {demo: {services: {webhook: {system_packages: [chromium]}}}}",
            "packages.demo.services.webhook.system_packages",
        ),
    ],
)
def test_a_repository_config_may_not_set_them(text, path):
    with pytest.raises(ConfigError) as caught:
        load_build_config(OPERATOR, text.encode(), NO_ENV)
    errors = dict(caught.value.errors)
    assert errors[path].startswith(
        "operator only: set it in the operator config (the file at KILN_CONFIG_PATH)"
    )
    assert "config.yaml in the repository, line 1" in errors[path]
