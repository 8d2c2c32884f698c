"""Symbolic links in a pushed tree, on real files: which ones stage config refuses, what the
credential scan sees through, and what the compile engine's tree discovery accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.compiler.engine.tree import UnsafeLink, discover
from services.compiler.source import (
    UnreadableConfig,
    find_credential_files,
    find_escaping_links,
    read_repository_config,
)

PEM = "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n"


@pytest.fixture
def tree(tmp_path) -> Path:
    root = tmp_path / "repo"
    (root / "core" / "data").mkdir(parents=True)
    (root / "core" / "__init__.py").write_text("")
    (root / "core" / "data" / "real.txt").write_text("fine\n")
    (root / "other").mkdir()
    (root / "other" / "x.txt").write_text("other factory\n")
    return root


def test_links_leaving_the_tree_are_found_files_and_directories_alike(tree, tmp_path):
    outside = tmp_path / "secret.pem"
    outside.write_text(PEM)
    (tree / "core" / "settings.txt").symlink_to("/proc/self/environ")
    (tree / "core" / "notes.txt").symlink_to(outside)
    (tree / "core" / "up").symlink_to("../..", target_is_directory=True)
    (tree / "core" / "inside.txt").symlink_to("data/real.txt")
    (tree / "core" / "chain.txt").symlink_to("inside.txt")
    assert find_escaping_links(tree) == [
        f"core/notes.txt -> {outside}",
        "core/settings.txt -> /proc/self/environ",
        "core/up -> ../..",
    ]


def test_the_credential_scan_looks_through_links_at_their_targets(tree):
    hidden = tree / ".venv-like"
    hidden.mkdir()
    (hidden / "pyvenv.cfg").write_text("")  # a virtualenv: skipped by the walk itself
    (hidden / "key.txt").write_text(PEM)
    (tree / "core" / "harmless.txt").symlink_to("../.venv-like/key.txt")
    (tree / "core" / "deploy.pem").symlink_to("data/real.txt")  # named like a key
    (tree / "core" / "out.txt").symlink_to("/etc/hostname")  # cannot be vouched for
    (tree / "core" / "inside.txt").symlink_to("data/real.txt")
    assert find_credential_files(tree) == ["core/deploy.pem", "core/harmless.txt", "core/out.txt"]


def test_the_repository_config_must_be_a_regular_file_in_the_tree(tree, tmp_path):
    assert read_repository_config(tree, "config.yaml", 10) is None
    (tree / "config.yaml").write_text("x" * 100)
    assert read_repository_config(tree, "config.yaml", 10) == b"x" * 11  # never more than limit + 1
    (tree / "config.yaml").unlink()
    (tree / "config.yaml").symlink_to("core")
    with pytest.raises(UnreadableConfig, match="not a regular file inside the repository"):
        read_repository_config(tree, "config.yaml", 10)


def test_the_engine_copies_in_factory_links_and_refuses_the_rest(tree):
    (tree / "core" / "inside.txt").symlink_to("data/real.txt")
    assert Path("core/inside.txt") in discover(tree, ["core"]).data_files
    (tree / "core" / "borrowed.txt").symlink_to("../other/x.txt")
    with pytest.raises(
        UnsafeLink, match=r"core/borrowed\.txt is a symbolic link to \.\./other/x\.txt, outside"
    ):
        discover(tree, ["core"])
    (tree / "core" / "borrowed.txt").unlink()
    (tree / "core" / "gone.py").symlink_to("missing.py")
    with pytest.raises(UnsafeLink, match="which is not a file"):
        discover(tree, ["core"])
