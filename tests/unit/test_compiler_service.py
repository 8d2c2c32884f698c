"""on_build_requested through the real bootstrap with fakes for the source, the compile engine
and the artifact store: stage events, fan-out rules, key checks, failures, cancel, reuse."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest

from services.compiler.base_python.reader import BasePythonError
from services.compiler.bootstrap import bootstrap
from services.compiler.engine import CompileReport, TargetPython
from services.compiler.engine.report import CompiledModule, CompiledSet
from services.compiler.ports import FetchFailed
from services.compiler.settings import CompilerSettings
from services.compiler.tiers_bundle import TIERS_FILE
from shared.bus import MemoryIdempotencyGuard
from shared.bus import topology as t
from shared.config import generate_keys
from shared.events import (
    BuildFinished,
    BuildRequested,
    CompileCompleted,
    ImageRequested,
    StageFinished,
    StageStarted,
)
from shared.events.build import Options, Source
from shared.events.compile import Artifact
from shared.git_source import GitSource

EXAMPLE = Path(__file__).parents[2] / "examples" / "monorepo"
OPERATOR = EXAMPLE.parent / "operator" / "config.yaml"
BASES = {"base_image_amd64": "base:amd64", "base_image_arm64": "base:arm64"}


@dataclass
class FakeContext:
    build_id: str = "11111111-2222-3333-4444-555555555555"
    emitted: list = field(default_factory=list)
    envelope: SimpleNamespace = field(default_factory=lambda: SimpleNamespace(attempt=1))

    def emit(self, event):
        self.emitted.append(event)

    def of(self, kind):
        return [e for e in self.emitted if isinstance(e, kind)]

    def stage(self, name):
        return next(e for e in self.of(StageFinished) if e.stage == name)


@dataclass
class FakeFetcher:
    root: Path
    error: Exception | None = None

    def fetch(self, source, work_dir, *, package=None):
        if self.error:
            raise self.error
        return self.root

    def fetch_history(self, dest, source, branches, *, package=None):
        return []  # the tree is a plain directory: no history to fetch


@dataclass
class FakeCompiler:
    failures: dict = field(default_factory=dict)  # module -> (file, line, message)
    calls: list = field(default_factory=list)

    def compile(self, src, out, *, platforms, factories, fallback_to_source, progress=None, pythons=None):
        self.calls.append(factories)
        self.pythons = pythons
        outputs = {p: out / p.split("/")[1] for p in platforms}
        for directory in outputs.values():
            directory.mkdir(parents=True)
        modules = [CompiledModule(f"{f}.main", f, "ok", 5, file=f"{f}/main.py") for f in factories]
        for module, (file, line, message) in self.failures.items():
            modules.append(CompiledModule(module, module.split(".")[0], "error", 3, message, file, line))
        sets = [CompiledSet(f, 1, 1, 0, 0, 5) for f in factories]
        return CompileReport(outputs=outputs, modules=modules, sets=sets, duration_ms=42)


@dataclass
class FakePythons:
    """The base images' Pythons: what the compile stage asked for, and what to answer."""

    answer: dict = field(default_factory=dict)
    error: Exception | None = None
    asked: list = field(default_factory=list)

    @contextlib.contextmanager
    def held(self, bases, log):
        self.asked.append(dict(bases))
        if self.error:
            raise self.error
        log("read the base images")
        yield dict(self.answer)


@dataclass
class FakeStore:
    location: str = "file:///fake"
    pushed: list = field(default_factory=list)

    def push(self, tree, *, package, build, platform, source_digest):
        self.pushed.append((platform, (tree / TIERS_FILE).read_text(), build))
        digest = "sha256:" + str(len(self.pushed)) * 64
        return Artifact(platform=platform, reference=f"file:///fake/{package}@{digest}", digest=digest)

    def exists(self, artifact):
        return True


@pytest.fixture
def source(tmp_path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".ruff_cache", "__pycache__"))
    return root


def operator_config(tmp_path) -> Path:
    """This test's copy of the example operator config (KILN_CONFIG_PATH), made on first use."""
    path = tmp_path / "operator" / "config.yaml"
    if not path.is_file():
        path.parent.mkdir(parents=True)
        shutil.copy(OPERATOR, path)
    return path


@pytest.fixture
def keys(tmp_path) -> Path:
    generate_keys(tmp_path / "keys", "demo")
    return tmp_path / "keys"


def run_build(
    tmp_path,
    root,
    keys_dir,
    event=None,
    *,
    env=None,
    fetcher=None,
    compiler=None,
    store=None,
    cancelled=False,
    base_images=None,
    pythons=None,
):
    images = {**BASES, **(base_images or {})}
    settings = CompilerSettings(
        compiler_cache=str(tmp_path / "cache"),
        work_dir=str(tmp_path),
        config_path=str(operator_config(tmp_path)),
        **images,
    )
    environ = {"KILN_KEYS_DIR": str(keys_dir), **(env or {})}
    service = bootstrap(
        settings,
        fetcher=fetcher or FakeFetcher(root),
        compiler=compiler or FakeCompiler(),
        store=store or FakeStore(),
        environ=environ,
        guard=MemoryIdempotencyGuard(),
        pythons=pythons or FakePythons(),
    )
    if cancelled:
        service.cancel._cancelled["11111111-2222-3333-4444-555555555555"] = ("user asked", 1)
    ctx = FakeContext()
    handler = service.handlers(t.COMPILER_BUILDS)[BuildRequested]
    handler(event or BuildRequested(package="demo", source=Source(path=str(root))), ctx)
    return ctx


def test_a_build_runs_three_stages_then_requests_every_enabled_image(tmp_path, source, keys):
    store = FakeStore()
    ctx = run_build(tmp_path, source, keys, store=store)
    assert [(type(e).__name__, e.stage) for e in ctx.of(StageStarted)] == [
        ("StageStarted", "config"),
        ("StageStarted", "keys"),
        ("StageStarted", "compile"),
    ]
    assert [e.status for e in ctx.of(StageFinished)] == ["succeeded"] * 3
    (completed,) = ctx.of(CompileCompleted)
    assert completed.ok and len(completed.artifacts) == 2
    assert {(t.target, t.platform) for t in completed.targets} == {
        (s, p)
        for s in ("report", "scheduler", "storage-worker", "webhook")
        for p in ("linux/amd64", "linux/arm64")
    }
    assert {m.platform for m in completed.modules} == {"linux/amd64", "linux/arm64"}
    requests = ctx.of(ImageRequested)
    assert len(requests) == 8
    webhook = next(r for r in requests if r.target == "webhook" and r.platform == "linux/amd64")
    assert webhook.repository == "127.0.0.1:5000/kiln/prism-webhook-demo"
    assert webhook.base_image == "base:amd64"
    assert webhook.health_path == "/healthz" and webhook.port == 8080
    assert webhook.factories == ("core", "webhook") and webhook.tier == "minimal"
    assert webhook.artifact.platform == "linux/amd64"
    assert webhook.tags == ("latest",)
    assert ctx.of(BuildFinished) == []
    tiers = store.pushed[0][1]
    assert '"minimal"' in tiers and "#" not in tiers


def test_feature_off_arm_names_tags_and_configured_base_images(tmp_path, source, keys):
    config = operator_config(tmp_path)
    config.write_text(
        config.read_text().replace(
            "      platforms: [linux/amd64, linux/arm64]\n",
            "      platforms: [linux/amd64, linux/arm64]\n      base_images: {linux/arm64: mine:arm}\n",
        )
    )
    event = BuildRequested(
        package="demo", build_number=7, source=Source(path=str(source), ref="refs/heads/main")
    )
    ctx = run_build(tmp_path, source, keys, event, env={"KILN_FEATURES_REPORTS": "false"})
    requests = ctx.of(ImageRequested)
    assert "report" not in {r.target for r in requests}
    arm = next(r for r in requests if r.target == "scheduler" and r.platform == "linux/arm64")
    assert arm.repository == "127.0.0.1:5000/kiln/axion-scheduler-demo-arm"
    assert arm.base_image == "mine:arm"
    assert arm.tags == ("latest", "b7")
    amd = next(r for r in requests if r.target == "scheduler" and r.platform == "linux/amd64")
    assert amd.base_image == "base:amd64" and amd.repository.endswith("axion-scheduler-demo")
    assert "report" not in {t.target for t in ctx.of(CompileCompleted)[0].targets}


def test_a_missing_base_image_fails_stage_config(tmp_path, source, keys):
    ctx = run_build(tmp_path, source, keys, base_images={"base_image_arm64": None})
    assert ctx.stage("config").status == "failed"
    assert "KILN_BASE_IMAGE_ARM64" in ctx.stage("config").error


def test_a_malformed_default_base_image_fails_stage_config_before_any_image(tmp_path, source, keys):
    ctx = run_build(tmp_path, source, keys, base_images={"base_image_amd64": "base:amd64\nRUN id"})
    error = ctx.stage("config").error
    assert "base image for linux/amd64: image reference 'base:amd64\\nRUN id' is not" in error
    assert "KILN_BASE_IMAGE_AMD64" in error and ctx.of(ImageRequested) == []


def test_without_its_own_config_yaml_the_tree_is_built_from_the_operator_config(tmp_path, source, keys):
    (source / "config.yaml").unlink()
    ctx = run_build(tmp_path, source, keys)
    assert ctx.stage("config").detail["repository_config"] is False
    assert len(ctx.of(ImageRequested)) == 8


def test_a_repository_config_setting_the_registry_fails_stage_config_naming_the_key(tmp_path, source, keys):
    (source / "config.yaml").write_text("packages:\n  demo:\n    deployment: {registry: {host: evil:5000}}\n")
    ctx = run_build(tmp_path, source, keys)
    failed = ctx.stage("config")
    assert failed.detail["errors"] == [
        "packages.demo.deployment: operator only: set it in the operator config (the file at "
        "KILN_CONFIG_PATH), not in the repository (a repository config may set here: factories, "
        "features, compile, services) (config.yaml in the repository, line 3)"
    ]
    assert ctx.of(BuildFinished)[0].failed_stage == "config" and ctx.of(ImageRequested) == []


def test_the_compiler_does_not_start_without_an_operator_config(tmp_path):
    with pytest.raises(SystemExit, match="KILN_CONFIG_PATH must name the operator config"):
        bootstrap(
            CompilerSettings(config_path=None, compiler_cache=str(tmp_path / "c")),
            guard=MemoryIdempotencyGuard(),
        )


def test_a_key_planted_in_the_tree_fails_stage_keys_naming_it(tmp_path, source, keys):
    (source / "core" / "deploy.pem").write_text("not really a key\n")
    (source / "storage" / "notes.txt").write_text(
        "-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----\n"
    )
    ctx = run_build(tmp_path, source, keys)
    failed = ctx.stage("keys")
    assert failed.status == "failed"
    assert "core/deploy.pem" in failed.error and "storage/notes.txt" in failed.error
    assert failed.detail["credential_files"] == ["core/deploy.pem", "storage/notes.txt"]
    (finished,) = ctx.of(BuildFinished)
    assert finished.failed_stage == "keys" and finished.status == "failed"
    assert ctx.of(CompileCompleted)[0].ok is False
    assert ctx.of(ImageRequested) == []


def test_missing_keys_fail_naming_the_expected_paths(tmp_path, source):
    ctx = run_build(tmp_path, source, tmp_path / "nowhere")
    error = ctx.stage("keys").error
    assert str(tmp_path / "nowhere" / "demo_private.pem") in error
    assert str(tmp_path / "nowhere" / "demo_public.pem") in error


def test_a_module_that_fails_fails_the_build_with_file_and_line(tmp_path, source, keys):
    compiler = FakeCompiler(failures={"core.broken": ("core/broken.py", 3, "invalid syntax")})
    ctx = run_build(tmp_path, source, keys, compiler=compiler)
    assert ctx.stage("compile").status == "failed"
    assert "core/broken.py:3: invalid syntax" in ctx.stage("compile").error
    (completed,) = ctx.of(CompileCompleted)
    assert completed.ok is False
    broken = [m for m in completed.modules if m.status == "error"]
    assert {(m.file, m.line, m.platform) for m in broken} == {
        ("core/broken.py", 3, "linux/amd64"),
        ("core/broken.py", 3, "linux/arm64"),
    }
    assert ctx.of(BuildFinished)[0].failed_stage == "compile"
    assert ctx.of(ImageRequested) == []


def test_an_invalid_config_fails_stage_config_with_every_error(tmp_path, source, keys):
    config = source / "config.yaml"
    config.write_text(config.read_text().replace("port: 8080", "port: 99999").replace("replicas", "replica"))
    ctx = run_build(tmp_path, source, keys)
    failed = ctx.stage("config")
    assert failed.status == "failed" and "port" in failed.error
    assert len(failed.detail["errors"]) >= 1
    assert ctx.of(BuildFinished)[0].failed_stage == "config"


def test_an_unknown_package_and_an_unexpected_crash_end_as_failed_stages(tmp_path, source, keys):
    ctx = run_build(tmp_path, source, keys, BuildRequested(package="nope", source=Source(path=str(source))))
    assert "no package 'nope'" in ctx.stage("config").error
    ctx = run_build(tmp_path, source, keys, fetcher=FakeFetcher(source, error=RuntimeError("disk on fire")))
    assert ctx.stage("config").error == "unexpected RuntimeError: disk on fire"
    assert ctx.of(BuildFinished)[0].status == "failed"


def test_a_cancelled_build_reports_the_stage_cancelled_and_stops(tmp_path, source, keys):
    ctx = run_build(tmp_path, source, keys, cancelled=True)
    (cancelled,) = ctx.of(StageFinished)
    assert (cancelled.stage, cancelled.status) == ("config", "cancelled")
    assert "user asked" in cancelled.error
    assert ctx.of(BuildFinished) == [] and ctx.of(StageStarted) == []


def test_skip_compile_reuses_the_artifacts_of_the_same_source(tmp_path, source, keys):
    compiler = FakeCompiler()
    first = run_build(tmp_path, source, keys, compiler=compiler)
    event = BuildRequested(
        package="demo", source=Source(path=str(source)), options=Options(skip_compile=True)
    )
    again = run_build(tmp_path, source, keys, event, compiler=compiler)
    assert len(compiler.calls) == 1
    (completed,) = again.of(CompileCompleted)
    assert completed.skipped and completed.artifacts == first.of(CompileCompleted)[0].artifacts
    assert again.stage("compile").detail["reused"] is True
    (source / "core" / "text.py").write_text("CHANGED = 1\n")
    changed = run_build(tmp_path, source, keys, event, compiler=compiler)
    assert len(compiler.calls) == 2
    assert "no earlier artifacts" in changed.stage("compile").detail["note"]


def trixie(platform: str) -> TargetPython:
    triplet = {"linux/amd64": "x86_64-linux-gnu", "linux/arm64": "aarch64-linux-gnu"}[platform]
    return TargetPython("3.13", f"cpython-313-{triplet}", ("/h/python3.13",), "d" * 64, "the base image")


def test_each_platform_compiles_for_the_python_of_its_base_image_named_by_its_key(tmp_path, source, keys):
    config = operator_config(tmp_path)
    config.write_text(
        config.read_text().replace(
            "      platforms: [linux/amd64, linux/arm64]\n",
            "      platforms: [linux/amd64, linux/arm64]\n      base_images: {linux/arm64: mine:arm}\n",
        )
    )
    pythons = FakePythons(answer={p: trixie(p) for p in ("linux/amd64", "linux/arm64")})
    compiler = FakeCompiler()
    ctx = run_build(tmp_path, source, keys, compiler=compiler, pythons=pythons)
    (asked,) = pythons.asked
    assert {p: (b.reference, b.key) for p, b in asked.items()} == {
        "linux/amd64": ("base:amd64", "KILN_BASE_IMAGE_AMD64"),
        "linux/arm64": ("mine:arm", "packages.demo.deployment.base_images.linux/arm64"),
    }
    assert compiler.pythons == pythons.answer  # what the engine compiles for
    compiled = ctx.stage("compile")
    assert compiled.status == "succeeded"
    assert compiled.detail["python"] == {"linux/amd64": "cpython-313-x86_64-linux-gnu",
                                         "linux/arm64": "cpython-313-aarch64-linux-gnu"}  # fmt: skip


def test_a_base_image_that_cannot_be_compiled_for_fails_stage_compile_naming_its_key(tmp_path, source, keys):
    error = BasePythonError(
        "KILN_BASE_IMAGE_ARM64: base image base:arm64 (linux/arm64) has no Python Kiln's images could run"
    )
    compiler = FakeCompiler()
    ctx = run_build(tmp_path, source, keys, compiler=compiler, pythons=FakePythons(error=error))
    failed = ctx.stage("compile")
    assert failed.status == "failed" and failed.error.startswith(
        "KILN_BASE_IMAGE_ARM64: base image base:arm64"
    )
    assert failed.detail["base_images"] == {"linux/amd64": "base:amd64", "linux/arm64": "base:arm64"}
    assert compiler.calls == [] and ctx.of(ImageRequested) == []
    assert ctx.of(BuildFinished)[0].failed_stage == "compile"


def test_skip_compile_never_reuses_artifacts_compiled_for_another_python(tmp_path, source, keys):
    compiler = FakeCompiler()
    run_build(tmp_path, source, keys, compiler=compiler)  # the host's Python (FakePythons answers {})
    event = BuildRequested(
        package="demo", source=Source(path=str(source)), options=Options(skip_compile=True)
    )
    pythons = FakePythons(answer={p: trixie(p) for p in ("linux/amd64", "linux/arm64")})
    moved = run_build(tmp_path, source, keys, event, compiler=compiler, pythons=pythons)
    assert len(compiler.calls) == 2 and "no earlier artifacts" in moved.stage("compile").detail["note"]


def test_clone_failures_never_show_the_token(tmp_path, source, keys):
    token = "ghp_s3cretT0kenValue123456"
    seen = []

    def fake_git(command, **kwargs):
        seen.append((command, kwargs["env"]))
        if "fetch" in command:
            return subprocess.CompletedProcess(
                command, 128, "", f"fatal: could not read from https://x:{token}@example.com/r.git ({token})"
            )
        return subprocess.CompletedProcess(command, 0, "", "")

    from pydantic import SecretStr

    git = GitSource(token=SecretStr(token), run=fake_git, token_hosts={"example.com"})
    with pytest.raises(FetchFailed) as failure:
        git.fetch(Source(repo_url="https://example.com/r.git", commit="abc123"), tmp_path / "w")
    assert token not in str(failure.value) and "git fetch failed (exit 128)" in str(failure.value)
    assert all(token not in " ".join(command) for command, _ in seen)
    assert seen[1][1]["KILN_GIT_ASKPASS_TOKEN"] == token and seen[1][1]["GIT_ASKPASS"]

    ctx = run_build(tmp_path, source, keys, fetcher=FakeFetcher(source, error=failure.value))
    error = ctx.stage("config").error
    assert error.startswith("fetching the source failed: git fetch failed")
    assert token not in repr(ctx.emitted)


def test_a_repository_that_looks_missing_hints_at_the_token_and_is_tried_once(tmp_path):
    fetches = []

    def fake_git(command, **kwargs):
        if "fetch" in command:
            fetches.append(command)
            return subprocess.CompletedProcess(command, 128, "", "remote: Repository not found.\nfatal: nope")
        return subprocess.CompletedProcess(command, 0, "", "")

    source = Source(repo_url="https://example.com/private.git", ref="refs/heads/main", commit="abc123")
    with pytest.raises(FetchFailed) as failure:
        GitSource(run=fake_git).fetch(source, tmp_path / "w")
    message = str(failure.value)
    assert message.startswith("https://example.com/private.git was not found: check source.repo_url")
    assert "KILN_GIT_TOKEN" in message and "Repository not found" in message
    assert len(fetches) == 1  # not retried by ref: the ref would meet the same answer
