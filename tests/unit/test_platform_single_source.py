"""The platforms and the branch prefix are typed once, in shared/platforms.py.

Scans the string literals of the Python code under shared/, services/, cli/, scripts/ and bench/
(docstrings and comments are prose and may name a platform); a literal naming a platform, a
machine, a manylinux tag or a GNU triplet anywhere else means a list was typed again and will
drift from `PLATFORMS` the day a platform is added.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from shared import platforms

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("shared", "services", "cli", "scripts", "bench")
SOURCE = Path("shared/platforms.py")

# A bare architecture counts only as a whole literal ("arm64"): queue names and settings like
# base_image_arm64 are derived from it, not lists of it.
_PLATFORM = re.compile(
    r"linux/(amd64|arm64)|aarch64|x86_64|x86-64|manylinux|[a-z0-9_]+-linux-gnu|^(amd64|arm64)$",
)
_BRANCH_PREFIX = re.compile(r"^(ref: )?refs/heads/")

# Files whose literals may name a platform, each with the reason. Keep this short: a new entry
# needs a reason that is not "it was easier".
ALLOWED: dict[str, str] = {
    "bench/compile/run.py": "'arm64' there names a benchmark scenario and its result key, not a platform",
    "bench/live_logs/write_cost.py": "a sample compile log line, measured for its size; prose, not a list",
}


def _python_files() -> list[Path]:
    files = []
    for top in SCANNED:
        files += sorted(p for p in (ROOT / top).rglob("*.py") if "/tests/" not in p.as_posix())
    return files


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the Constant nodes that are docstrings (module, class, function)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _literals(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skip = _docstrings(tree)
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip
    ]


def _offenders(pattern: re.Pattern[str], allowed: set[str]) -> list[str]:
    found = []
    for path in _python_files():
        relative = path.relative_to(ROOT).as_posix()
        if relative in allowed:
            continue
        found += [f"{relative}:{line}: {text!r}" for line, text in _literals(path) if pattern.search(text)]
    return found


def test_the_scan_sees_the_source_module():
    """The scan is not vacuous: the one module allowed to type the platforms does type them."""
    literals = [text for _, text in _literals(ROOT / SOURCE)]
    assert any(_PLATFORM.search(text) for text in literals)
    assert any(_BRANCH_PREFIX.search(text) for text in literals)
    assert (ROOT / SOURCE) in _python_files()


def test_no_platform_string_outside_shared_platforms():
    offenders = _offenders(_PLATFORM, {SOURCE.as_posix(), *ALLOWED})
    assert not offenders, (
        "platform strings typed outside shared/platforms.py (derive them from PLATFORMS, "
        "parse(), arch_of(); or add the file to ALLOWED with a reason):\n" + "\n".join(offenders)
    )


def test_only_branch_of_strips_refs_heads():
    offenders = _offenders(_BRANCH_PREFIX, {SOURCE.as_posix()})
    assert not offenders, (
        "refs/heads/ handled outside shared/platforms.py (use branch_of, ref_of, is_branch_ref):\n"
        + "\n".join(offenders)
    )


def test_every_allowed_file_exists_and_still_needs_its_entry():
    for relative, reason in ALLOWED.items():
        assert reason, relative
        path = ROOT / relative
        assert path.is_file(), f"ALLOWED names {relative}, which is gone"
        still_needed = any(_PLATFORM.search(text) for _, text in _literals(path))
        assert still_needed, f"{relative} no longer needs its ALLOWED entry"


def test_branch_helpers():
    assert platforms.branch_of("refs/heads/feature/x") == "feature/x"
    assert platforms.branch_of("main") == "main"
    assert platforms.ref_of("main") == platforms.ref_of("refs/heads/main") == "refs/heads/main"
    assert platforms.is_branch_ref("refs/heads/main") and not platforms.is_branch_ref("refs/tags/v1")


def test_platform_names_and_derived_strings():
    assert platforms.PLATFORM_NAMES == ("linux/amd64", "linux/arm64")
    assert platforms.parse("aarch64") is platforms.parse("arm64") is platforms.ARM64
    assert platforms.ARM64.cross_gcc_package == "gcc-aarch64-linux-gnu"
    assert platforms.AMD64.cross_gcc_package == "gcc-x86-64-linux-gnu"
    assert platforms.ARM64.python_headers_package("3.13") == "libpython3.13-dev:arm64"
    assert platforms.ARM64.python_tag("3.13") == "cpython-313-aarch64-linux-gnu"
    assert [p.repository_suffix for p in platforms.PLATFORMS] == ["", "-arm"]
    assert platforms.host("x86_64") is platforms.AMD64 and platforms.host("s390x") is None
