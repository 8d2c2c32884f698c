"""Unit tests of the compile engine's pure logic (no compiler runs, no files)."""

from pathlib import Path

import pytest

from services.compiler.__main__ import build_parser
from services.compiler.engine import cc
from services.compiler.engine.build import _has_no_code, output_dirs
from services.compiler.engine.cache import ModuleCache, digest
from services.compiler.engine.cythonize import DIRECTIVES, _first_error, cython_fingerprint
from services.compiler.engine.precheck import check_syntax, has_no_code
from services.compiler.engine.report import CompiledModule, CompileReport, summarize_sets
from services.compiler.engine.tree import _module_name


def result(module, factory, status, ms=10):
    return CompiledModule(module, factory, status, ms, "boom" if status == "error" else None, "f.py", None)


def test_directives_are_safe_for_arbitrary_python():
    assert DIRECTIVES["language_level"] == 3
    assert DIRECTIVES["binding"] is True
    assert DIRECTIVES["annotation_typing"] is False
    assert "annotation_typing=False" in cython_fingerprint()


def test_digest_is_unambiguous_about_part_boundaries():
    assert digest("ab", "c") != digest("a", "bc")
    assert digest(b"x", "y") == digest("x", b"y")


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        ("factory/core/models.py", "factory.core.models"),
        ("factory/core/__init__.py", "factory.core"),
        ("top.py", "top"),
        ("factory/migrations/0001_initial.py", None),  # loaded by path, not importable by name
        ("factory/data.yaml", None),
    ],
)
def test_module_names(relative, expected):
    assert _module_name(Path(relative)) == expected


def test_factory_set_timing_counts_and_sums():
    modules = [
        result("a.x", "a", "ok", 100),
        result("a.y", "a", "cached", 0),
        result("a.z", "a", "error", 50),
        result("b", "b", "fallback", 7),
    ]
    sets = {s.factory: s for s in summarize_sets(modules)}
    assert (sets["a"].modules, sets["a"].ok, sets["a"].failed, sets["a"].cached) == (3, 2, 1, 1)
    assert sets["a"].duration_ms == 150
    assert sets["b"].ok == 1 and sets["b"].failed == 0


def test_report_ok_only_without_errors():
    report = CompileReport(outputs={}, modules=[result("a", "a", "ok"), result("b", "b", "fallback")])
    assert report.ok
    report.modules.append(result("c", "c", "error"))
    assert not report.ok
    assert report.to_dict()["ok"] is False


def test_syntax_precheck_reports_line():
    problem = check_syntax(b"x = 1\ndef broken(:\n    pass\n", "m.py")
    assert problem is not None and problem.line == 2 and "SyntaxError" in problem.message
    assert check_syntax(b"x = 1\n", "m.py") is None
    assert check_syntax(b"x = 1\x00", "m.py") is not None


def test_empty_module_detection():
    for source in (b"", b"\n\n", b"# comment only\n"):
        assert _has_no_code(source) and has_no_code(source)
    assert not _has_no_code(b'"""doc"""\n')
    assert not _has_no_code(b"import os\n")


def test_cython_error_parsing():
    output = "\nError compiling Cython file:\n---\n...\n---\n\npkg/m.py:7:4: Cannot assign type\n"
    failure = _first_error(output)
    assert failure.line == 7 and "Cannot assign type" in failure.message
    assert _first_error("").line is None


def test_platform_names():
    assert cc.normalize_platform("arm64") == "linux/arm64"
    assert cc.normalize_platform("x86_64") == "linux/amd64"
    with pytest.raises(ValueError, match="unsupported platform"):
        cc.normalize_platform("linux/s390x")


def test_output_dirs_one_platform_is_out_itself():
    assert output_dirs(Path("/o"), ["linux/amd64"]) == {"linux/amd64": Path("/o")}
    both = output_dirs(Path("/o"), ["linux/amd64", "linux/arm64"])
    assert both == {"linux/amd64": Path("/o/amd64"), "linux/arm64": Path("/o/arm64")}


def test_missing_cross_compiler_names_the_package(monkeypatch):
    monkeypatch.setattr(cc, "host_platform", lambda: "linux/amd64")
    monkeypatch.setattr(cc.shutil, "which", lambda name: None)
    with pytest.raises(cc.ToolchainMissing, match="gcc-aarch64-linux-gnu"):
        cc.toolchain_for("linux/arm64")


def test_cross_toolchain_suffix_and_flags(monkeypatch):
    monkeypatch.setattr(cc, "host_platform", lambda: "linux/amd64")
    monkeypatch.setattr(cc.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(cc.Path, "is_file", lambda self: True)
    toolchain = cc.toolchain_for("linux/arm64")
    assert toolchain.ext_suffix == ".cpython-311-aarch64-linux-gnu.so"
    command = toolchain.compile_command(Path("m.c"), Path("m.o"), ccache=None)
    assert command[0] == "aarch64-linux-gnu-gcc"
    assert "-I/usr/include/aarch64-linux-gnu/python3.11" in command and "-O2" in command


def test_cli_has_compile_subcommand():
    args = build_parser().parse_args(
        ["compile", "src", "--out", "o", "--platform", "linux/arm64", "--jobs", "3", "--json"]
    )
    assert (args.command, args.platforms, args.jobs, args.json) == ("compile", ["linux/arm64"], 3, True)


def test_cli_has_cache_subcommands_with_sizes():
    args = build_parser().parse_args(["cache", "prune", "--max-bytes", "2GiB", "--all"])
    assert (args.command, args.cache_action, args.all) == ("cache", "prune", True)
    assert args.max_bytes == 2 * 1024**3
    args = build_parser().parse_args(["compile", "src", "--out", "o", "--cache-max-bytes", "800MB"])
    assert args.max_bytes == 800 * 1000**2
    with pytest.raises(SystemExit):
        build_parser().parse_args(["cache", "stats", "--max-bytes", "lots"])


def test_ccache_size_is_never_a_bare_number():
    # ccache reads a bare number as gigabytes.
    assert cc.ccache_size(0) == "0"
    assert cc.ccache_size(512 * 1024**2) == "524288Ki"
    assert cc.ccache_size(10) == "1Ki"


def test_cache_bound_split_between_entries_and_ccache():
    cache = ModuleCache(Path("/nowhere"), max_bytes=10 * 1024**3)
    assert cache.ccache_max_bytes(True) == 1024**3
    assert cache.entries_max_bytes(True) == 9 * 1024**3
    assert cache.entries_max_bytes(False) == 10 * 1024**3  # no ccache: all of it for our entries
    assert ModuleCache(Path("/nowhere"), max_bytes=0).ccache_max_bytes(True) == 0  # unbounded
    with pytest.raises(ValueError, match="max_bytes"):
        ModuleCache(Path("/nowhere"), max_bytes=-1)


def test_cache_bound_setting_takes_units():
    from services.compiler.settings import CompilerSettings

    assert CompilerSettings().compiler_cache_max_bytes == 5 * 1024**3
    assert CompilerSettings(compiler_cache_max_bytes="20GiB").compiler_cache_max_bytes == 20 * 1024**3
