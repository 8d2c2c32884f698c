"""The system layer's caches and the job wiring, with apt and the engine replaced by fakes (their
real behaviour: tests/integration/test_imager_system_packages.py): a warm job runs no apt, an
evicted layer is built again, an unknown package fails the image naming its config keys, and the
packages a service asks for are its tier's and its own, from the operator config only."""

from __future__ import annotations

import contextlib
import io
import shutil
import tarfile
from pathlib import Path

import pytest
import yaml

from services.imager import system_layer
from services.imager.apt_archive import AptArchive, AptPolicy, AptUnavailable, Resolved, SystemPackagesFailed
from services.imager.image_job import JobContext, run_image_job
from services.imager.ports import BaseImageFacts, ProofResult
from services.imager.system_layer import SystemLayerCache, SystemRequest, system_request
from shared.config import load_config
from tests.unit.system_debs import make_deb
from tests.unit.test_imager_job import FakeBuilder, job, make_deps

OPERATOR = Path(__file__).resolve().parents[2] / "examples" / "operator" / "config.yaml"
MERGED = {"bin": "/usr/bin", "lib": "/usr/lib"}


class FakeReader:
    def __init__(self):
        self.facts_read = 0

    def base_image_id(self, image, platform):
        return "sha256:" + "e" * 64

    def base_image_facts(self, image, platform, top_dirs):
        self.facts_read += 1
        return BaseImageFacts("sha256:" + "e" * 64, b"Package: libc6\nStatus: install ok installed\n", MERGED)


class FakeArchive:
    """apt as the system layer sees it: `known` packages resolve (with a dependency), others fail."""

    calls: list[str] = []
    debs: dict[str, Path] = {}

    def __init__(self, root, arch, policy):
        self.dir = root / arch
        (self.dir / "resolved").mkdir(parents=True, exist_ok=True)
        (self.dir / "bases").mkdir(exist_ok=True)

    @contextlib.contextmanager
    def lists(self, log):
        yield "fingerprint-1"

    def resolve(self, packages, status):
        self.calls.append("resolve")
        assert b"libc6" in Path(status).read_bytes()  # resolved against the base's dpkg status
        unknown = [p for p in packages if p not in self.debs and p != "libc6"]
        if unknown:
            raise SystemPackagesFailed(f"E: Unable to locate package {unknown[0]}", frozenset(unknown))
        return sorted(Resolved(p, "1.0-1", "amd64") for p in packages if p in self.debs)

    def download(self, packages, status, dest):
        self.calls.append("download")
        dest.mkdir(parents=True)
        return [Path(shutil.copy(self.debs[p], dest)) for p in packages if p in self.debs]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    FakeArchive.calls = []
    FakeArchive.debs = {
        "kiln-tool": make_deb(tmp_path / "debs", "kiln-tool", {"/usr/bin/kiln-tool": (b"x", 0o755)})
    }
    monkeypatch.setattr(system_layer, "AptArchive", FakeArchive)
    return SystemLayerCache(tmp_path / "system", tmp_path / "apt", AptPolicy(), FakeReader())


def request(*names: str) -> SystemRequest:
    return SystemRequest(names, {n: ("tiers.render.system_packages",) for n in names})


def test_a_warm_job_reads_its_memo_and_runs_no_apt_and_reads_no_base(cache):
    first = cache.prepare(request("kiln-tool"), "kiln-base:bookworm-amd64", "linux/amd64", print)
    assert (first / "usr/bin/kiln-tool").is_file() and FakeArchive.calls == ["resolve", "download"]
    again = cache.prepare(request("kiln-tool"), "kiln-base:bookworm-amd64", "linux/amd64", print)
    assert again == first and FakeArchive.calls == ["resolve", "download"] and cache.reader.facts_read == 1


def test_an_evicted_layer_is_built_again(cache):
    first = cache.prepare(request("kiln-tool"), "kiln-base:bookworm-amd64", "linux/amd64", print)
    shutil.rmtree(first)
    assert cache.prepare(request("kiln-tool"), "kiln-base:bookworm-amd64", "linux/amd64", print) == first
    assert first.is_dir() and FakeArchive.calls.count("download") == 2


def test_packages_the_base_has_already_give_no_layer(cache):
    lines = []
    assert cache.prepare(request("libc6"), "kiln-base:bookworm-amd64", "linux/amd64", lines.append) is None
    assert lines == ["system packages libc6: all in the base image already"]


def test_an_unknown_package_fails_naming_its_config_keys_and_apt(cache):
    origins = {
        "imagemagik": ("packages.demo.services.report.system_packages",),
        "kiln-tool": ("tiers.render.system_packages",),
    }
    asked = SystemRequest(("imagemagik", "kiln-tool"), origins)
    with pytest.raises(SystemPackagesFailed) as failure:
        cache.prepare(asked, "kiln-base:bookworm-arm64", "linux/arm64", print)
    message = str(failure.value)
    assert message.startswith(
        "system packages 'imagemagik' (packages.demo.services.report.system_packages) cannot be installed "
        "for linux/arm64 from KILN_APT_SOURCES=/etc/apt/sources.list.d/debian.sources"
    )
    assert "E: Unable to locate package imagemagik" in message and "tiers.render" not in message


def _operator(tmp_path: Path) -> Path:
    data = yaml.safe_load(OPERATOR.read_text())
    data["tiers"]["minimal"]["system_packages"] = ["kiln-tool", "shared-one"]
    scheduler = data["packages"]["demo"]["services"]["scheduler"]
    scheduler["system_packages"] = ["shared-one", "imagemagick"]
    scheduler["factories"] = ["core"]
    for relative in data["tiers"]["minimal"]["requirements"]:  # an empty tier: no pip in a unit test
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text("")
    path = tmp_path / "operator.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_service_gets_the_union_of_its_tiers_and_its_own_with_each_key(tmp_path):
    asked = system_request(load_config(_operator(tmp_path), {}), "demo", "scheduler", "minimal")
    assert asked.packages == ("imagemagick", "kiln-tool", "shared-one")
    assert asked.origins["shared-one"] == (
        "tiers.minimal.system_packages",
        "packages.demo.services.scheduler.system_packages",
    )
    assert system_request(load_config(_operator(tmp_path), {}), "demo", "webhook", None).packages == ()


class ContextKeepingBuilder(FakeBuilder):
    def build(self, context_tar, reference, **kwargs):
        self.context = context_tar
        return super().build(context_tar, reference, **kwargs)


def _job_deps(tmp_path, cache):
    deps, _ = make_deps(tmp_path, ProofResult(ok=True, reason="up"))
    deps.builder = ContextKeepingBuilder()
    deps.config_path = str(_operator(tmp_path))
    deps.system = cache
    return deps


def test_a_job_copies_the_layer_its_operator_config_asks_for(tmp_path, cache):
    for name in ("shared-one", "imagemagick"):
        FakeArchive.debs[name] = make_deb(tmp_path / "debs", name, {f"/usr/share/{name}/x": b"x"})
    deps = _job_deps(tmp_path, cache)
    event = job().model_copy(update={"tier": "minimal"})
    emitted = []
    run_image_job(event, JobContext("build-1", "demo", emitted.append), deps)
    assert type(emitted[-1]).__name__ == "ImagePushed"
    with tarfile.open(fileobj=io.BytesIO(deps.builder.context)) as tar:
        names = set(tar.getnames())
        dockerfile = tar.extractfile("Dockerfile").read().decode()
    assert {
        "sys/usr/bin/kiln-tool",
        "sys/usr/share/imagemagick/x",
        "sys/var/lib/dpkg/status.d/kiln-tool",
    } <= names
    assert "# system packages imagemagick, kiln-tool, shared-one (amd64-" in dockerfile
    assert "COPY sys/ /\n" in dockerfile


def test_a_job_whose_package_apt_cannot_find_fails_the_image_and_pushes_nothing(tmp_path, cache):
    deps = _job_deps(tmp_path, cache)  # imagemagick and shared-one are not in this fake archive
    emitted = []
    run_image_job(
        job().model_copy(update={"tier": "minimal"}), JobContext("build-1", "demo", emitted.append), deps
    )
    failed = next(e for e in emitted if type(e).__name__ == "ImageFailed")
    assert "packages.demo.services.scheduler.system_packages" in failed.error
    assert deps.builder.pushed == []


def test_apt_runs_with_its_own_state_and_config_and_no_secret(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_REGISTRY_PASSWORD", "not-for-apt")
    sources = tmp_path / "debian.sources"
    sources.write_text("Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\nComponents: main\n")
    archive = AptArchive(tmp_path / "apt", "arm64", AptPolicy(sources))
    seen = {}

    def fake_run(command, **kwargs):
        seen.update(command=command, env=kwargs["env"])

        class Done:
            returncode, stderr = 0, ""
            stdout = (
                "Inst libfoo1 [1.0] (1.1 Debian:12.15/oldstable [arm64])\n"
                "Inst foo (2.0 Debian:12 [arm64])\nConf foo\n"
            )

        return Done()

    monkeypatch.setattr("services.imager.apt_archive.subprocess.run", fake_run)
    plan = archive.resolve(("foo",), tmp_path / "status")
    assert plan == [
        Resolved("foo", "2.0", "arm64"),
        Resolved("libfoo1", "1.1", "arm64", replaces_version="1.0"),
    ]
    assert not any(key.startswith("KILN_") for key in seen["env"]) and "not-for-apt" not in str(seen)
    assert seen["env"]["APT_CONFIG"] == str(archive.dir / "apt.conf")
    assert (archive.dir / "apt.conf").read_text().startswith(f'Dir::Etc::Parts "{archive.dir / "empty"}";')
    options = [word for word in seen["command"] if word.startswith("-o")]
    assert f"-oDir::State::status={tmp_path / 'status'}" in options and "-oAPT::Architecture=arm64" in options
    assert "-oAPT::Cmd::Pattern-Only=true" in options and "-oDebug::NoLocking=true" in options
    assert seen["command"][-3:] == ["--no-remove", "--", "foo"]
    assert (archive.dir / "sources.d" / "kiln.sources").read_text() == sources.read_text()


def test_a_missing_sources_file_names_the_setting(tmp_path):
    with pytest.raises(SystemPackagesFailed, match=r"KILN_APT_SOURCES=/nowhere/x\.sources is not a file"):
        AptArchive(tmp_path, "amd64", AptPolicy(Path("/nowhere/x.sources")))


def _archive_answering(tmp_path, monkeypatch, returncode: int, output: str) -> AptArchive:
    sources = tmp_path / "debian.sources"
    sources.write_text("Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\nComponents: main\n")

    class Done:
        stdout, stderr = output, ""

    Done.returncode = returncode
    monkeypatch.setattr("services.imager.apt_archive.subprocess.run", lambda command, **kwargs: Done())
    return AptArchive(tmp_path / "apt", "amd64", AptPolicy(sources))


def test_a_signature_failure_fails_the_job_naming_the_sources_setting(tmp_path, monkeypatch):
    output = "W: GPG error: http://mirror.example bookworm InRelease: NO_PUBKEY 6ED0E7B82643E131\n"
    archive = _archive_answering(tmp_path, monkeypatch, 100, output + "E: The repository is not signed.\n")
    with (
        pytest.raises(
            SystemPackagesFailed, match="could not verify the signed Release files of KILN_APT_SOURCES"
        ),
        archive.lists(print),
    ):
        pass


def test_an_unreachable_mirror_is_transient_and_old_lists_are_used_meanwhile(tmp_path, monkeypatch):
    archive = _archive_answering(tmp_path, monkeypatch, 100, "E: Failed to fetch http://mirror.example/x\n")
    with pytest.raises(AptUnavailable, match="no package lists yet"), archive.lists(print):  # the bus retries
        pass
    (archive.dir / "lists" / "mirror.example_dists_bookworm_InRelease").write_text("signed")
    lines = []
    with archive.lists(lines.append) as fingerprint:
        assert fingerprint
    assert "using the lists from before" in lines[-2]
    with archive.lists(lines.append):  # not tried again at once: in RETRY_UPDATE_AFTER_S
        pass
    assert sum("apt-get update (" in line for line in lines) == 1


def test_a_mirror_down_while_downloading_leaves_the_job_to_the_buss_retries(tmp_path, cache, monkeypatch):
    def unreachable(self, packages, status, dest):
        raise AptUnavailable("apt-get could not download the packages:\nE: Failed to fetch http://mirror/x")

    monkeypatch.setattr(FakeArchive, "download", unreachable)
    deps = _job_deps(tmp_path, cache)
    FakeArchive.debs.update(
        {"imagemagick": FakeArchive.debs["kiln-tool"], "shared-one": FakeArchive.debs["kiln-tool"]}
    )
    emitted = []
    with pytest.raises(AptUnavailable):  # not image.failed: a retry can succeed
        run_image_job(
            job().model_copy(update={"tier": "minimal"}), JobContext("b", "demo", emitted.append), deps
        )
    assert not any(type(e).__name__ == "ImageFailed" for e in emitted) and deps.builder.pushed == []
