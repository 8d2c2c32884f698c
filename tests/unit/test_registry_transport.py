"""The one TLS rule (shared.registry.transport) as each registry caller applies it: the client's
base URL, buildah's --tls-verify and trivy's --insecure. Pure logic, plus trivy's argv seen by a
recording stand-in for the binary."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest

from services.imager.adapters.buildah import base_image_of, bud_command
from services.scanner.adapters.trivy import TrivyCli
from shared.registry.transport import (
    InsecureRegistryRefused,
    is_loopback,
    log_insecure_hosts,
    parse_hosts,
    plain_http_allowed,
    registry_base_url,
    with_tls_hint,
)


@pytest.mark.parametrize(
    "registry", ["127.0.0.1:5000", "127.3.2.1", "localhost:5000", "[::1]:5000", "http://127.0.0.1:5000/"]
)
def test_loopback_needs_no_listing(registry):
    assert is_loopback(registry) and plain_http_allowed(registry)


@pytest.mark.parametrize(
    "registry", ["registry:5000", "10.0.0.5:5000", "127.example.com", "harbor.example.com"]
)
def test_any_other_host_needs_tls_unless_listed(registry):
    assert not plain_http_allowed(registry)
    assert registry_base_url(registry).startswith("https://")
    with pytest.raises(InsecureRegistryRefused, match="KILN_REGISTRY_INSECURE_HOSTS"):
        registry_base_url(f"http://{registry}")
    assert plain_http_allowed(f"{registry}/kiln/app:b1", parse_hosts(f" {registry.upper()} , other:1"))


def test_a_host_listed_without_port_covers_its_ports():
    assert plain_http_allowed("registry:5000/kiln/x:1", parse_hosts("registry"))
    assert not plain_http_allowed("registry:5000", parse_hosts("registry:6000"))


def test_the_opt_in_is_logged_at_start(caplog):
    with caplog.at_level(logging.WARNING):
        log_insecure_hosts(parse_hosts("registry:5000"), logging.getLogger("kiln.test"))
    assert "KILN_REGISTRY_INSECURE_HOSTS lists registry:5000" in caplog.text


def test_buildah_verifies_tls_unless_the_base_image_registry_may_use_plain_http(tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("# generated\nFROM harbor.example.com/base/python:3.11\nCOPY app/ /app/\n")
    assert base_image_of(dockerfile) == "harbor.example.com/base/python:3.11"
    command = bud_command(tmp_path, "harbor.example.com/kiln/x:1", "linux/amd64", "Dockerfile")
    assert "--tls-verify=true" in command
    command = bud_command(tmp_path, "x", "linux/amd64", "Dockerfile", tls_verify=False)
    assert "--tls-verify=false" in command


def _recording_trivy(tmp_path: Path) -> tuple[str, Path]:
    log = tmp_path / "argv"
    path = tmp_path / "trivy"
    path.write_text(f'#!/bin/sh\necho "$@" >> {log}\necho \'{{"SchemaVersion": 2, "Results": []}}\'\n')
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path), log


@pytest.mark.parametrize(
    ("reference", "listed", "insecure"),
    [
        ("127.0.0.1:5000/kiln/x@sha256:" + "0" * 64, "", True),
        ("harbor.example.com/kiln/x@sha256:" + "0" * 64, "", False),
        ("registry:5000/kiln/x@sha256:" + "0" * 64, "registry:5000", True),
    ],
)
def test_trivy_skips_tls_only_for_loopback_or_listed_registries(tmp_path, reference, listed, insecure):
    binary, log = _recording_trivy(tmp_path)
    cli = TrivyCli(binary, tmp_path, db_download=False, insecure_hosts=parse_hosts(listed))
    cli.scan_image(reference)
    assert ("--insecure" in log.read_text().split()) is insecure


def test_a_tls_failure_names_the_host_and_the_setting():
    error = (
        'pinging registry: Get "https://10.0.0.5:5000/v2/": http: server gave HTTP response to HTTPS client'
    )
    hinted = with_tls_hint(error, "10.0.0.5:5000/kiln/app:b1")
    assert hinted.startswith(error) and "add 10.0.0.5:5000 to KILN_REGISTRY_INSECURE_HOSTS" in hinted
    assert with_tls_hint("unauthorized", "10.0.0.5:5000") == "unauthorized"
