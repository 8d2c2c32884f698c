"""The tier venv for the Python the artifact was compiled for (its base image's): pip's tags,
the tier cache key, what the artifact may say, and the launcher for any python3.X command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.imager.dockerfile import LAUNCHER, launch_command
from services.imager.tier_venv import PythonTag, TierPreparationFailed, TierSpec, TierVenvCache, pip_command
from services.imager.tiers import artifact_python

HOST = PythonTag.host()


def after(command: list[str], flag: str) -> list[str]:
    return [command[i + 1] for i, word in enumerate(command) if word == flag]


def test_another_python_on_the_host_platform_gets_its_version_abi_and_platform_tags(tmp_path, monkeypatch):
    monkeypatch.setattr("services.imager.tier_venv.host_platform", lambda: "linux/amd64")
    command = pip_command(
        tmp_path / "r.txt", tmp_path / "t", "linux/amd64", python=PythonTag("3.13", "cp313")
    )
    assert after(command, "--python-version") == ["3.13"] and after(command, "--abi") == ["cp313"]
    assert after(command, "--implementation") == ["cp"] and "--only-binary=:all:" in command
    assert "manylinux2014_x86_64" in after(command, "--platform")
    same = pip_command(tmp_path / "r.txt", tmp_path / "t", "linux/amd64", python=HOST)
    assert "--python-version" not in same and "--platform" not in same  # the worker's own: as before


def test_the_other_platform_gets_the_artifacts_python_not_the_workers(tmp_path, monkeypatch):
    monkeypatch.setattr("services.imager.tier_venv.host_platform", lambda: "linux/amd64")
    command = pip_command(
        tmp_path / "r.txt", tmp_path / "t", "linux/arm64", python=PythonTag("3.13", "cp313")
    )
    assert after(command, "--python-version") == ["3.13"] and "manylinux_2_28_aarch64" in command
    legacy = pip_command(tmp_path / "r.txt", tmp_path / "t", "linux/arm64")  # no python recorded
    assert after(legacy, "--python-version") == [HOST.version] and after(legacy, "--abi") == [HOST.abi]


def test_the_tier_cache_key_holds_the_python():
    cache = TierVenvCache(Path("/tiers"))
    tier = TierSpec("report", ("orjson==3.10.7",))
    trixie = cache.path_for(tier, "linux/arm64", PythonTag("3.13", "cp313"))
    bookworm = cache.path_for(tier, "linux/arm64", PythonTag("3.11", "cp311"))
    assert trixie != bookworm and trixie.name.startswith("report-arm64-cp313-")
    assert cache.path_for(tier, "linux/arm64") == cache.path_for(tier, "linux/arm64", HOST)


def test_the_artifact_says_which_python(tmp_path):
    assert artifact_python(tmp_path) is None  # no manifest: the worker's own Python
    manifest = tmp_path / ".kiln-compile.json"
    manifest.write_text(json.dumps({"modules": {}, "python_version": "3.13", "abi": "cp313"}))
    assert artifact_python(tmp_path) == PythonTag("3.13", "cp313")
    manifest.write_text(json.dumps({"modules": {}}))  # an artifact of an older compiler
    assert artifact_python(tmp_path) is None


@pytest.mark.parametrize(
    ("version", "abi"),
    [
        ("3.13 --index-url=https://evil.example/simple", "cp313"),
        ("3.13", "cp313 --extra-index-url https://evil.example"),
        ("3.13", "cp311"),
        ("2.7", "cp27"),
        (None, "cp313"),
    ],
)
def test_a_forged_artifact_python_is_refused_before_pip_sees_it(tmp_path, version, abi):
    (tmp_path / ".kiln-compile.json").write_text(json.dumps({"python_version": version, "abi": abi}))
    with pytest.raises(TierPreparationFailed, match="the artifact's"):
        artifact_python(tmp_path)


def test_any_python3_command_goes_through_the_launcher():
    assert launch_command(("python3.13", "-m", "app.main")) == ("python3", LAUNCHER, "app.main")
    assert launch_command(("/usr/local/bin/python3.13t", "-m", "a"))[1] == LAUNCHER
    assert launch_command(("python3.13-config", "-m", "a")) == ("python3.13-config", "-m", "a")
