"""The compile engine for real: Cython, gcc, the cache and the standalone command on a tiny tree."""

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from services.compiler.engine import MARKER_NAME, ModuleCache, OutputNotOurs, compile_tree

REPO = Path(__file__).resolve().parents[2]
SUFFIX = ".cpython-311-x86_64-linux-gnu.so"


def write_tree(root: Path) -> Path:
    package = root / "shop"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("from .prices import net\n\nVERSION = '1'\n")
    (package / "prices.py").write_text(
        "def net(amount: int, rate: float = 0.2) -> float:\n    return amount * (1 - rate)\n"
    )
    (package / "sub" / "__init__.py").write_text("# nothing here\n")
    (package / "sub" / "rules.yaml").write_text("rate: 0.2\n")
    return root


def compile_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "services.compiler", "compile", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def run_python(path: Path, code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=path, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> ModuleCache:
    return ModuleCache(tmp_path_factory.mktemp("cache"))


def test_compiled_tree_layout_behaviour_and_cache(tmp_path, cache):
    src, out = write_tree(tmp_path / "src"), tmp_path / "out"
    first = compile_tree(src, out, platforms=["linux/amd64"], jobs=2, cache=cache)
    assert first.ok, first.failed
    assert {m.module: m.status for m in first.modules} == {
        "shop": "ok",
        "shop.prices": "ok",
        "shop.sub": "ok",
    }
    files = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert files == {
        ".kiln-compile.json",
        f"shop/__init__{SUFFIX}",
        f"shop/{MARKER_NAME}",
        f"shop/prices{SUFFIX}",
        "shop/sub/__init__.py",  # comment-only: written empty, not compiled
        "shop/sub/rules.yaml",
    }
    assert (out / "shop/sub/__init__.py").read_text() == ""
    assert json.loads((out / "shop" / MARKER_NAME).read_text())["compiled"] is True
    printed = run_python(out, "import shop; print(shop.__file__, shop.net(100), shop.VERSION)")
    assert printed == f"{out}/shop/__init__{SUFFIX} 80.0 1"

    started = time.perf_counter()
    again = compile_tree(src, out, platforms=["linux/amd64"], jobs=2, cache=cache)
    assert time.perf_counter() - started < 1.0
    assert [m.status for m in again.modules if m.module != "shop.sub"] == ["cached", "cached"]

    (src / "shop" / "prices.py").write_text("def net(amount, rate=0.5):\n    return amount * rate\n")
    changed = compile_tree(src, out, platforms=["linux/amd64"], jobs=2, cache=cache)
    statuses = {m.module: m.status for m in changed.modules}
    assert statuses["shop.prices"] == "ok" and statuses["shop"] == "cached"
    assert run_python(out, "import shop; print(shop.net(100))") == "50.0"


def test_bad_modules_are_reported_with_file_and_line(tmp_path, cache):
    src = write_tree(tmp_path / "src")
    (src / "shop" / "broken.py").write_text("x = 1\n\ndef oops(:\n    pass\n")
    (src / "shop" / "typed.py").write_text('import cython\n\nx = cython.declare(cython.int, "abc")\n')
    done = compile_cli(str(src), "--out", str(tmp_path / "out"), "--cache", str(cache.root), "--json")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    report = json.loads(done.stdout)
    by_module = {m["module"]: m for m in report["modules"]}
    assert (by_module["shop.broken"]["file"], by_module["shop.broken"]["line"]) == (
        "shop/broken.py",
        3,
    )
    assert "SyntaxError" in by_module["shop.broken"]["error"]
    assert by_module["shop.typed"]["status"] == "error" and by_module["shop.typed"]["line"] == 3
    assert "Cython" in by_module["shop.typed"]["error"]
    assert by_module["shop.prices"]["status"] in ("ok", "cached")  # the others still reported
    assert report["ok"] is False and report["sets"][0]["failed"] == 2


def test_fallback_to_source_keeps_named_module_as_source(tmp_path, cache):
    src = write_tree(tmp_path / "src")
    (src / "shop" / "typed.py").write_text('import cython\n\nx = cython.declare(cython.int, "abc")\n')
    out = tmp_path / "out"
    report = compile_tree(
        src, out, platforms=["linux/amd64"], jobs=2, cache=cache, fallback_to_source={"shop.typed"}
    )
    assert report.ok
    assert {m.module: m.status for m in report.modules}["shop.typed"] == "fallback"
    assert (out / "shop" / "typed.py").is_file()


def test_refuses_to_replace_a_directory_it_did_not_produce(tmp_path, cache):
    src, out = write_tree(tmp_path / "src"), tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(OutputNotOurs):
        compile_tree(src, out, platforms=["linux/amd64"], jobs=1, cache=cache)
    with pytest.raises(OutputNotOurs):
        compile_tree(src, src / "out", platforms=["linux/amd64"], jobs=1, cache=cache)
    assert (out / "precious.txt").read_text() == "keep me"


def test_package_directory_as_src_and_human_output(tmp_path, cache):
    src = write_tree(tmp_path / "src") / "shop"
    done = compile_cli(str(src), "--out", str(tmp_path / "out"), "--cache", str(cache.root))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "shop" / f"prices{SUFFIX}").is_file()
    assert "3 modules" in done.stdout and "shop" in done.stdout


def test_concurrent_builds_share_one_cache(tmp_path):
    src = write_tree(tmp_path / "src")
    cache = ModuleCache(tmp_path / "shared-cache")
    with ThreadPoolExecutor(max_workers=2) as pool:
        reports = list(
            pool.map(
                lambda name: compile_tree(
                    src, tmp_path / name, platforms=["linux/amd64"], jobs=1, cache=cache
                ),
                ["out-a", "out-b"],
            )
        )
    assert all(report.ok for report in reports)
    a, b = (
        (tmp_path / "out-a" / "shop" / f"prices{SUFFIX}"),
        (tmp_path / "out-b" / "shop" / f"prices{SUFFIX}"),
    )
    assert a.read_bytes() == b.read_bytes()
    assert not list(cache.root.rglob(".tmp-*")), "no half-written cache entry may remain"
