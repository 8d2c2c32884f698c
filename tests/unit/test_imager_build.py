"""The imager's pure parts: Dockerfile, build context, tier requirements, traceback reading."""

from __future__ import annotations

import io
import tarfile

import pytest

from services.imager.build_context import FIXED_MTIME, MissingFactory, directory_context, service_context
from services.imager.dockerfile import LAUNCHER, LAUNCHER_SOURCE, ImageSpec, launch_command, render_dockerfile
from services.imager.tier_venv import PipPolicy, TierSpec, parse_requirements, pip_command
from services.imager.traceback_reading import find_missing_import, kept_factories_hint


def spec(**overrides) -> ImageSpec:
    values = dict(
        base_image="kiln-base:bookworm-arm64",
        command=("python3", "-m", "webhook.server"),
        factories=("webhook", "core"),
        tier="minimal",
        requirements_hash="abc",
        port=8080,
        health_path="/healthz",
        labels={"dev.kiln.build-id": "b-1", "org.opencontainers.image.title": 'we"ird $x'},
    )
    values.update(overrides)
    return ImageSpec(**values)


def test_dockerfile_has_no_run_step_and_layers_in_cache_friendly_order():
    text = render_dockerfile(spec())
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines[0] == "FROM kiln-base:bookworm-arm64"
    assert not any(line.startswith("RUN") for line in lines)
    copies = [line for line in lines if line.startswith("COPY")]
    assert copies == [
        "COPY launch/ /opt/kiln/launch/",
        "COPY tier/ /opt/kiln/venv/",
        "COPY app/core/ /app/core/",
        "COPY app/webhook/ /app/webhook/",
    ]
    assert "EXPOSE 8080" in lines and any(line.startswith("HEALTHCHECK") for line in lines)
    assert f'CMD ["python3", "{LAUNCHER}", "webhook.server"]' in lines
    # labels change every build, so they come after everything that has a cache
    assert text.index("LABEL") > text.index("CMD")
    assert 'org.opencontainers.image.title="we\\"ird \\$x"' in text


def test_worker_without_port_gets_no_expose_nor_healthcheck():
    text = render_dockerfile(spec(port=None, health_path=None, tier=None))
    assert "EXPOSE" not in text and "HEALTHCHECK" not in text and "COPY tier/" not in text


def test_launch_command_only_rewrites_python_dash_m():
    assert launch_command(("python3", "-m", "a.b", "--x")) == ("python3", LAUNCHER, "a.b", "--x")
    assert launch_command(("/usr/bin/python", "-m", "a")) == ("python3", LAUNCHER, "a")
    assert launch_command(("./serve", "-m", "a")) == ("./serve", "-m", "a")


def _tree(tmp_path):
    art = tmp_path / "artifact"
    (art / "core").mkdir(parents=True)
    (art / "core" / "__init__.cpython-311-x86_64-linux-gnu.so").write_bytes(b"so")
    (art / "core" / "text.py").write_text("compiled, must not ship")
    (art / "core" / "kept.py").write_text("fallback: ships as source")
    (art / "core" / "server.pem").write_text("-----BEGIN PRIVATE KEY-----")
    (art / "core" / "config.yaml").write_text("secret: 1")
    (art / "report").mkdir()
    (art / "report" / "x.so").write_bytes(b"so")
    (art / ".kiln-compile.json").write_text('{"modules": {"core": "compiled", "core.text": "compiled"}}')
    tier = tmp_path / "tier"
    (tier / "tabulate").mkdir(parents=True)
    (tier / "tabulate" / "__init__.py").write_text("x = 1")
    return art, tier


def _names(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {member.name: member for member in tar.getmembers()}


def test_context_keeps_only_the_kept_factories_and_never_keys_config_or_compiled_source(tmp_path):
    art, tier = _tree(tmp_path)
    members = _names(service_context("FROM x\n", art, ("core",), tier, LAUNCHER_SOURCE))
    assert "app/core/__init__.cpython-311-x86_64-linux-gnu.so" in members
    assert "app/core/kept.py" in members
    assert "tier/tabulate/__init__.py" in members and "launch/kiln_launch.py" in members
    for never in ("app/core/text.py", "app/core/server.pem", "app/core/config.yaml", "app/report/x.so"):
        assert never not in members
    assert {m.mtime for m in members.values()} == {FIXED_MTIME}
    assert {m.uid for m in members.values()} == {0}


def test_context_is_byte_identical_for_identical_inputs(tmp_path):
    art, tier = _tree(tmp_path)
    first = service_context("FROM x\n", art, ("core",), tier, LAUNCHER_SOURCE)
    for path in art.rglob("*"):
        path.touch()  # new mtimes must not change a byte
    assert service_context("FROM x\n", art, ("core",), tier, LAUNCHER_SOURCE) == first


def test_missing_factory_in_artifact_is_named(tmp_path):
    art, tier = _tree(tmp_path)
    with pytest.raises(MissingFactory, match="'storage'"):
        service_context("FROM x\n", art, ("storage",), tier, LAUNCHER_SOURCE)


def test_plain_dockerfile_context_keeps_sources_but_not_secrets(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM x\n")
    (tmp_path / "app.py").write_text("print(1)")
    (tmp_path / ".env").write_text("TOKEN=1")
    (tmp_path / "key.pem").write_text("k")
    assert set(_names(directory_context(tmp_path))) == {"Dockerfile", "app.py"}


def test_arm_exclude_drops_packages_on_arm64_only():
    tier = TierSpec(
        "ai", parse_requirements("numpy==2.0  # x\n\n# c\nTorch_Lib>=1\ntabulate\n"), ("torch-lib",)
    )
    assert tier.lines_for("linux/amd64") == ("numpy==2.0", "Torch_Lib>=1", "tabulate")
    assert tier.lines_for("linux/arm64") == ("numpy==2.0", "tabulate")
    assert tier.requirements_hash("linux/amd64") != tier.requirements_hash("linux/arm64")


def test_cross_platform_pip_fetches_binary_wheels_for_the_target(tmp_path, monkeypatch):
    monkeypatch.setattr("services.imager.tier_venv.host_platform", lambda: "linux/amd64")
    cross = pip_command(tmp_path / "r.txt", tmp_path / "t", "linux/arm64")
    assert "--only-binary=:all:" in cross and "manylinux2014_aarch64" in cross and "3.11" in cross
    native = pip_command(tmp_path / "r.txt", tmp_path / "t", "linux/amd64")
    assert "--platform" not in native and "--target" in native
    # The host platform too: an sdist would run its setup code on the worker (issue #13).
    assert "--only-binary=:all:" in native and "--index-url" not in native


def test_pip_uses_the_operators_index_and_builds_sdists_only_when_allowed(tmp_path, monkeypatch):
    monkeypatch.setattr("services.imager.tier_venv.host_platform", lambda: "linux/amd64")
    policy = PipPolicy(index_url="https://pypi.example.internal/simple", allow_sdists=True)
    native = pip_command(tmp_path / "r.txt", tmp_path / "t", "linux/amd64", policy)
    assert native[native.index("--index-url") + 1] == policy.index_url
    assert "--only-binary=:all:" not in native


COMPILED_TRACE = """Traceback (most recent call last):
  File "/opt/kiln/launch/kiln_launch.py", line 25, in launch
  File "<frozen importlib._bootstrap>", line 1206, in _gcd_import
  File "examples/monorepo/report/worker.py", line 6, in init report.worker
ModuleNotFoundError: No module named 'core'"""

SOURCE_TRACE = """Traceback (most recent call last):
  File "<frozen runpy>", line 198, in _run_module_as_main
  File "/app/webhook/server.py", line 12, in <module>
    from core.text import slugify
ImportError: cannot import name 'slugify' from 'core.text' (/app/core/text.py)"""


def test_traceback_names_importer_and_missing_module():
    compiled = find_missing_import(COMPILED_TRACE)
    assert (compiled.importer, compiled.missing) == ("report.worker", "core")
    source = find_missing_import(SOURCE_TRACE)
    assert (source.importer, source.missing) == ("webhook.server", "core.text.slugify")
    assert find_missing_import("ValueError: nope") is None


# A compiled module's dynamic import (examples/axion-like dialog/engine.py without its factory nlp),
# as the proof logged it: Cython frames carry the path of the sandboxed compile's temporary view
# and the function's qualified name, then come importlib's own frames.
DYNAMIC_TRACE = """Traceback (most recent call last):
  File "/opt/kiln/launch/kiln_launch.py", line 28, in launch
  File "kiln-compile-0yh_e4yb/view/dialog/server.py", line 19, in dialog.server.main
  File "kiln-compile-0yh_e4yb/view/dialog/engine.py", line 25, in dialog.engine.load_engine
  File "/usr/lib/python3.11/importlib/__init__.py", line 126, in import_module
  File "<frozen importlib._bootstrap>", line 1140, in _find_and_load_unlocked
ModuleNotFoundError: No module named 'nlp'"""


def test_a_missing_factory_is_named_with_what_to_change():
    missing = find_missing_import(DYNAMIC_TRACE)
    assert (missing.importer, missing.missing) == ("dialog.engine", "nlp")
    hint = kept_factories_hint(missing.missing, ("dialog", "core", "httpapi"))
    assert "keeps factories core, dialog, httpapi: if nlp is a factory" in hint
    assert "add it to this service's factories" in hint
    # the factory is there but a name in it is not: no advice to add what is already kept
    assert kept_factories_hint("core.text.slugify", ("core",)) == (
        "; factory core is in the image, but not core.text.slugify"
    )


def test_no_labels_means_no_label_instruction():
    # an empty LABEL is a build error in buildah
    assert "LABEL" not in render_dockerfile(spec(labels={}))
