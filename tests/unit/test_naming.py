"""Naming rules: versions, image references, tags, DNS names; merge-base on a real git repo."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from shared.naming import (
    build_tag,
    derived_version,
    digest_ref,
    image_ref,
    image_repository,
    namespace,
    registry_host_of,
    safe_name,
    split_repository,
    validate_image_reference,
    validate_repository,
    validate_tag,
    version_for_branch,
    version_for_ref,
)

MAP = {"develop": "meridian", "main": "axion", "helix": "helix", "*": "prism"}


@pytest.mark.parametrize(
    ("branch", "version"),
    [
        ("develop", "meridian"),
        ("main", "axion"),
        ("refs/heads/main", "axion"),
        ("helix", "helix"),
        ("feature/login", "prism"),
        ("hotfix", "prism"),
    ],
)
def test_version_for_branch_default_map(branch, version):
    assert version_for_branch(branch) == version
    assert version_for_branch(branch, MAP) == version


def test_version_for_branch_patterns_in_map_order():
    version_map = {"main": "axion", "release/*": "stable", "release/1.*": "old", "*": "prism"}
    assert version_for_branch("release/1.2", version_map) == "stable"
    assert version_for_branch("main", version_map) == "axion"
    assert version_for_branch("other", version_map) == "prism"


def test_version_for_branch_without_fallback_raises():
    with pytest.raises(ValueError, match="no '\\*'"):
        version_for_branch("other", {"main": "axion"})


@pytest.mark.parametrize("branch", ["", "-rf", "a..b", "with space", "x~1", "a:b", "end/", "x.lock"])
def test_version_for_branch_rejects_bad_branch_names(branch):
    with pytest.raises(ValueError, match="branch"):
        version_for_branch(branch, MAP)


def test_version_for_branch_rejects_a_version_that_cannot_be_a_tag():
    with pytest.raises(ValueError, match="version"):
        version_for_branch("main", {"main": "Axion!", "*": "prism"})


def test_image_repository_amd64_and_arm():
    assert (
        image_repository("127.0.0.1:5000", "kiln", "meridian", "report", "demo", "linux/amd64")
        == "127.0.0.1:5000/kiln/meridian-report-demo"
    )
    assert (
        image_repository("127.0.0.1:5000", "kiln", "meridian", "report", "demo", "linux/arm64")
        == "127.0.0.1:5000/kiln/meridian-report-demo-arm"
    )


def test_image_repository_with_tenant_and_ref():
    assert (
        image_ref("harbor.local", "kiln", "axion", "storage-worker", "demo", "linux/arm64", "b42", "acme")
        == "harbor.local/kiln/tenants/acme/axion-storage-worker-demo-arm:b42"
    )


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"registry_host": "http://reg"}, "registry host"),
        ({"project": "Kiln"}, "project"),
        ({"version": "meri dian"}, "version"),
        ({"service": "web/hook"}, "service"),
        ({"package": "demo;rm"}, "package"),
        ({"package": "-demo"}, "package"),
        ({"package": "a" * 64}, "package"),
        ({"platform": "linux/386"}, "platform"),
        ({"tenant": "Acme"}, "tenant"),
        ({"service": ""}, "service"),
    ],
)
def test_image_repository_rejects_bad_components(kwargs, word):
    args = {
        "registry_host": "127.0.0.1:5000",
        "project": "kiln",
        "version": "meridian",
        "service": "report",
        "package": "demo",
        "platform": "linux/amd64",
        **kwargs,
    }
    with pytest.raises(ValueError, match=word):
        image_repository(**args)


def test_image_ref_rejects_bad_tag():
    with pytest.raises(ValueError, match="tag"):
        image_ref("reg", "kiln", "axion", "report", "demo", "linux/amd64", ".hidden")


def test_build_tag():
    assert build_tag(42) == "b42"
    for bad in (0, -1, True, "42", 1.5):
        with pytest.raises(ValueError, match="build number"):
            build_tag(bad)


def test_digest_ref():
    digest = "sha256:" + "a" * 64
    assert digest_ref("reg/kiln/x", digest) == f"reg/kiln/x@{digest}"
    with pytest.raises(ValueError, match="digest"):
        digest_ref("reg/kiln/x", "sha256:xyz")


def test_safe_name_and_namespace():
    assert safe_name("Storage_Worker") == "storage-worker"
    assert safe_name("v1.2") == "v1-2"
    assert namespace("demo", "dev") == "demo-dev"
    for bad in ("", "-x", "a" * 64, "x/y", "émoji"):
        with pytest.raises(ValueError, match="DNS-1123"):
            safe_name(bad)


def _git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True)
    return result.stdout.strip()


def _commit(repo: Path, message: str) -> None:
    with (repo / "log.txt").open("a") as log:
        log.write(message + "\n")
    _git(repo, "add", "log.txt")
    _git(repo, "commit", "-q", "-m", message)


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    """main: A-B-C; develop forks at B (B-D-E); feat-dev forks from E, feat-main from C."""
    _git(tmp_path, "init", "-q", "-b", "main")
    _git(tmp_path, "config", "user.email", "t@example.com")
    _git(tmp_path, "config", "user.name", "t")
    _commit(tmp_path, "A")
    _commit(tmp_path, "B")
    _git(tmp_path, "branch", "develop")
    _commit(tmp_path, "C")
    _git(tmp_path, "checkout", "-q", "-b", "feat-main")
    _commit(tmp_path, "F1")
    _git(tmp_path, "checkout", "-q", "develop")
    _commit(tmp_path, "D")
    _commit(tmp_path, "E")
    _git(tmp_path, "checkout", "-q", "-b", "feat-dev")
    _commit(tmp_path, "G1")
    _commit(tmp_path, "G2")
    _git(tmp_path, "checkout", "-q", "main")
    return tmp_path


def test_version_for_ref_uses_the_most_recent_fork_point(repo):
    assert version_for_ref(repo, "feat-dev", MAP) == "meridian"
    assert version_for_ref(repo, "feat-main", MAP) == "axion"
    assert version_for_ref(repo, _git(repo, "rev-parse", "feat-dev"), MAP) == "meridian"


def test_version_for_ref_prefers_explicit_map_entries(repo):
    assert version_for_ref(repo, "main", MAP) == "axion"
    assert version_for_ref(repo, "feat-dev", {"feat-*": "special", **MAP}) == "special"


def test_version_for_ref_falls_back_when_no_mapped_branch_exists(repo):
    assert version_for_ref(repo, "feat-dev", {"release": "stable", "*": "prism"}) == "prism"


def test_version_for_ref_rejects_unknown_or_option_like_refs(repo):
    with pytest.raises(ValueError, match="does not name a commit"):
        version_for_ref(repo, "no-such-branch", MAP)
    with pytest.raises(ValueError, match="must not start"):
        version_for_ref(repo, "--output=/tmp/x", MAP)


def test_derived_version_accepts_only_the_derived_repository():
    where = dict(registry_host="127.0.0.1:5000", project="kiln", service="web", package="demo")
    assert derived_version("127.0.0.1:5000/kiln/axion-web-demo", platform="linux/amd64", **where) == "axion"
    assert (
        derived_version("127.0.0.1:5000/kiln/axion-web-demo-arm", platform="linux/arm64", **where) == "axion"
    )
    tenant = derived_version(
        "127.0.0.1:5000/kiln/tenants/acme/prism-web-demo", platform="linux/amd64", tenant="acme", **where
    )
    assert tenant == "prism"
    for foreign in (
        "127.0.0.1:5999/kiln/axion-web-demo",  # another host: it would receive the credentials
        "127.0.0.1:5000/other/axion-web-demo",  # another project
        "127.0.0.1:5000/kiln/axion-api-demo",  # another service
        "127.0.0.1:5000/kiln/axion-web-demo2",  # another package
        "127.0.0.1:5000/kiln/axion-web-demo-arm",  # the arm64 repository for an amd64 image
        "127.0.0.1:5000/kiln/a/b-web-demo",  # a path where the version goes
        "127.0.0.1:5000/kiln/-web-demo",  # no version
        "127.0.0.1:5000/kiln/axion-web-demo\n",
    ):
        with pytest.raises(ValueError, match="derived from the operator config"):
            derived_version(foreign, platform="linux/amd64", **where)


def test_image_references_and_repositories_refuse_whitespace_and_control_characters():
    assert validate_image_reference("127.0.0.1:5000/kiln/base:bookworm-amd64")
    assert validate_image_reference("python:3.11-slim-bookworm@sha256:" + "a" * 64)
    assert validate_repository("registry:5000/kiln/axion-web-demo")
    for bad in ("base:1\nRUN curl x", "base:1 AS x", "base:1\n", "", "https://x/y", "x/{{ y }}"):
        with pytest.raises(ValueError, match="image reference"):
            validate_image_reference(bad)
        with pytest.raises(ValueError, match="repository"):
            validate_repository(bad)


def test_a_trailing_newline_is_not_a_valid_component():
    with pytest.raises(ValueError):
        image_repository("127.0.0.1:5000", "kiln", "axion\n", "web", "demo", "linux/amd64")
    with pytest.raises(ValueError):
        validate_tag("b1\n")


def test_registry_hosts_and_repository_hosts():
    assert registry_host_of("http://Registry:5000/v2/") == "registry:5000"
    assert registry_host_of("127.0.0.1:5000") == "127.0.0.1:5000"
    assert split_repository("127.0.0.1:5000/kiln/x") == ("127.0.0.1:5000", "kiln/x")
    assert split_repository("localhost/x") == ("localhost", "x")
    assert split_repository("library/python") == (None, "library/python")


def test_explicit_version_is_only_what_the_branch_name_maps_to():
    from shared.naming import explicit_version

    assert explicit_version("refs/heads/main", MAP) == "axion"
    assert explicit_version("feat-dev", {"feat-*": "special", **MAP}) == "special"
    assert explicit_version("bugfix/x", MAP) is None  # `*` alone: the fork point decides


def test_fork_point_branches_are_the_plain_valid_keys_in_map_order_and_capped():
    from shared.naming import MAX_FORK_POINT_BRANCHES, fork_point_branches

    assert fork_point_branches({"develop": "m", "feature/*": "p", "-x": "evil", "main": "a", "*": "p"}) == [
        "develop",
        "main",
    ]
    many = {f"b{n}": "v" for n in range(100)}
    assert len(fork_point_branches(many)) == MAX_FORK_POINT_BRANCHES


def test_build_version_asks_the_fork_point_only_for_an_unmapped_branch():
    from types import SimpleNamespace

    from services.compiler.fanout import build_version
    from shared.events import BuildRequested
    from shared.events.build import Source

    config = SimpleNamespace(version_map={"develop": "meridian", "main": "axion", "*": "prism"})
    asked = []

    def fork_point(branches):
        asked.append(branches)
        return "meridian"

    def version(ref, **kw):
        return build_version(BuildRequested(package="demo", source=Source(ref=ref), **kw), config, fork_point)

    assert version("refs/heads/main") == "axion" and asked == []
    assert version("refs/heads/bugfix/x") == "meridian" and asked == [["develop", "main"]]
    assert version("refs/heads/bugfix/x", version="pinned") == "pinned"
    assert (
        build_version(BuildRequested(package="demo", source=Source(ref="bugfix/x")), config, lambda b: None)
        == "prism"
    )
