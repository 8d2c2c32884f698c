"""The compile cache's size bound for real: Cython, gcc and ccache filling a cache directory,
least-recently-used eviction, and eviction beside a build running in another process."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from services.compiler.engine import ModuleCache, compile_tree
from services.compiler.engine.build import PYTHON_ABI
from services.compiler.engine.cache import digest
from services.compiler.engine.cythonize import cython_fingerprint
from services.compiler.engine.eviction import LOW_WATER, prune

REPO = Path(__file__).resolve().parents[2]
SUFFIX = ".cpython-311-x86_64-linux-gnu.so"
DAY_NS = 86_400 * 10**9


def module_source(name: str, functions: int = 2) -> str:
    template = "def {name}_{i}(x, y=2):\n    return [x + y * k for k in range({i} + 3)]\n"
    body = [template.format(name=name, i=i) for i in range(functions)]
    return "\n\n".join([f"class {name.title()}:\n    def size(self):\n        return {functions}\n", *body])


def write_package(root: Path, package: str, modules: dict[str, int]) -> Path:
    """root/package with one module per name (`functions` functions each: bigger = slower to build)."""
    directory = root / package
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "__init__.py").write_text("")
    for name, functions in modules.items():
        (directory / f"{name}.py").write_text(module_source(name, functions))
    return root


def c_entry(cache: ModuleCache, src: Path, module: str) -> Path:
    """The cache's C entry of `module` (dotted) under `src`: the key the engine computes."""
    source = (src / (module.replace(".", "/") + ".py")).read_bytes()
    return cache.c_path(digest(source, module, cython_fingerprint(), PYTHON_ABI))


def extension(out: Path, module: str) -> Path:
    """The output's .so of `module`: a hard link to the cache entry (same inode, same times)."""
    return out / (module.replace(".", "/") + SUFFIX)


def set_last_use(path: Path, ns_ago: int) -> None:
    then = time.time_ns() - ns_ago
    os.utime(path, ns=(then, then))


def entries(cache: ModuleCache) -> set[Path]:
    return {p for kind in ("c", "so") for p in (cache.root / kind).rglob("*") if p.is_file()}


def cache_cli(*args: str, cache: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "services.compiler", "cache", *args, "--cache", str(cache)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_hit_stamps_the_entry_and_prune_evicts_least_recently_used_first(tmp_path):
    src = write_package(tmp_path / "src", "lru", {"a": 2, "b": 2, "c": 2, "d": 2})
    out = tmp_path / "out"
    cache = ModuleCache(tmp_path / "cache")
    assert compile_tree(src, out, platforms=["linux/amd64"], jobs=2, cache=cache).ok

    # Every entry last used long ago; then a no-change build must stamp what it uses.
    for entry in entries(cache):
        set_last_use(entry, 10 * DAY_NS)
    written = {m: extension(out, f"lru.{m}").stat().st_mtime_ns for m in "abcd"}
    report = compile_tree(src, out, platforms=["linux/amd64"], jobs=2, cache=cache)
    assert {r.status for r in report.modules if r.module != "lru"} == {"cached"}
    for name in "abcd":
        stamped = extension(out, f"lru.{name}").stat()
        assert time.time_ns() - stamped.st_atime_ns < 60 * 10**9, "a hit stamps the entry's last use"
        assert stamped.st_mtime_ns == written[name], "the write time is left alone"

    # Last use: a (4 days) < b (3) < c (2) < d (1) for both kinds of entry.
    for age, name in zip((4, 3, 2, 1), "abcd", strict=True):
        set_last_use(extension(out, f"lru.{name}"), age * DAY_NS)
        set_last_use(c_entry(cache, src, f"lru.{name}"), age * DAY_NS)
    size = {name: extension(out, f"lru.{name}").stat().st_size for name in "abcd"}
    inode = {name: extension(out, f"lru.{name}").stat().st_ino for name in "abcd"}
    c_size = {name: c_entry(cache, src, f"lru.{name}").stat().st_size for name in "abcd"}
    keep = size["c"] + size["d"] + c_size["c"] + c_size["d"]
    # A bound that holds c and d (below LOW_WATER of it) but not b as well; ccache gets its tenth.
    bounded = ModuleCache(cache.root, max_bytes=int(keep / LOW_WATER / 0.9) + 1024)
    result = prune(bounded)

    assert result.evicted == 4 and result.evicted_bytes == size["a"] + size["b"] + c_size["a"] + c_size["b"]
    left = {entry.stat().st_ino for entry in entries(cache)}
    for name, kept in zip("abcd", (False, False, True, True), strict=True):
        assert (inode[name] in left) is kept
        assert c_entry(cache, src, f"lru.{name}").exists() is kept
    assert result.kept_bytes == keep
    assert (cache.state_dir / "size").read_text() == str(keep)
    # Eviction never reaches into an output tree: its files are links of their own.
    assert extension(out, "lru.a").is_file()
    done = subprocess.run(
        [sys.executable, "-c", "import lru.a; print(lru.a.a_1(1))"], cwd=out, capture_output=True, text=True
    )
    assert done.stdout.strip() == "[1, 3, 5, 7]", done.stderr


def test_a_build_that_grows_the_cache_past_its_bound_prunes_it(tmp_path):
    cache = ModuleCache(tmp_path / "cache", max_bytes=0)  # unbounded: fill it first
    old_src = write_package(tmp_path / "old", "old", {"x": 2, "y": 2})
    assert compile_tree(old_src, tmp_path / "out-old", platforms=["linux/amd64"], jobs=2, cache=cache).ok
    old_entries = entries(cache)
    for entry in old_entries:
        set_last_use(entry, DAY_NS)

    new_src = write_package(tmp_path / "new", "new", {"p": 2, "q": 2})
    probe = ModuleCache(tmp_path / "probe", max_bytes=0)
    assert compile_tree(new_src, tmp_path / "out-probe", platforms=["linux/amd64"], jobs=2, cache=probe).ok
    new_size = sum(e.stat().st_size for e in entries(probe))

    # Room for the new build's entries, not for the old ones as well.
    bounded = ModuleCache(cache.root, max_bytes=int(new_size / LOW_WATER / 0.9) + 4096)
    report = compile_tree(new_src, tmp_path / "out-new", platforms=["linux/amd64"], jobs=2, cache=bounded)
    assert report.ok
    assert not (old_entries & entries(bounded)), "the old, unused entries are evicted"
    assert len(entries(bounded)) == 4  # p and q: C + .so each
    recorded = int((bounded.state_dir / "size").read_text())
    assert recorded == sum(e.stat().st_size for e in entries(bounded))
    last = json.loads((bounded.state_dir / "last-prune.json").read_text())
    assert last["evicted"] == len(old_entries)
    # ccache was told its share: nothing of it stays over a tenth of the bound.
    ccache_objects = [p for p in cache.ccache_dir.rglob("*") if p.name.endswith(("R", "M"))]  # results
    assert sum(p.stat().st_size for p in ccache_objects) <= bounded.ccache_max_bytes()


def test_prune_beside_a_running_build_in_another_process(tmp_path):
    """Worker A compiles (its cached module was looked up long before) while `cache prune --all`
    runs in another process: what A uses stays, the rest goes; once A is done, it can go too."""
    cache_dir = tmp_path / "cache"
    cache = ModuleCache(cache_dir)
    src = write_package(tmp_path / "src", "busy", {"kept": 2, "fast": 1})
    unrelated = write_package(tmp_path / "other", "other", {"gone": 2})
    for tree, out in ((src, "out-seed"), (unrelated, "out-other")):
        assert compile_tree(tree, tmp_path / out, platforms=["linux/amd64"], jobs=2, cache=cache).ok
    (src / "busy" / "fast.py").write_text(module_source("fast", 1) + "\n\nEXTRA = 1\n")
    (src / "busy" / "slow.py").write_text(module_source("slow", 300))  # several seconds of gcc
    for entry in entries(cache):
        set_last_use(entry, DAY_NS)
    kept_so = extension(tmp_path / "out-seed", "busy.kept").stat().st_ino
    gone_so = extension(tmp_path / "out-other", "other.gone").stat().st_ino

    worker = subprocess.Popen(
        [sys.executable, "-m", "services.compiler", "compile", str(src), "--out", str(tmp_path / "out"),
         "--cache", str(cache_dir), "--jobs", "2"],
        cwd=REPO,
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        for line in worker.stderr:
            if line.split()[1:3] == ["ok", "busy.fast"]:
                break  # A has looked everything up (busy.kept: cached) and is compiling busy.slow
        else:
            raise AssertionError(f"the build ended early: {worker.wait()} {worker.stdout.read()}")
        time.sleep(3)  # past the clock slack: only the lease protects busy.kept now
        during = cache_cli("prune", "--all", "--json", cache=cache_dir)
        assert worker.poll() is None, "the build must still be running for this test to mean anything"
        stats = json.loads(cache_cli("stats", "--json", cache=cache_dir).stdout)
        stdout, stderr = worker.communicate(timeout=300)
    finally:
        worker.kill()
    assert during.returncode == 0, during.stderr
    pruned = json.loads(during.stdout)
    assert pruned["running_builds"] == 1 and pruned["evicted"] >= 2, pruned
    inodes = {e.stat().st_ino for e in entries(cache)}
    assert kept_so in inodes, "the entry the running build looked up survived the prune"
    assert gone_so not in inodes, "an entry nobody uses was evicted"
    assert [b["pid"] for b in stats["running_builds"]] == [worker.pid]

    assert worker.returncode == 0, stderr
    assert "4 modules: 3 compiled, 1 cached" in stdout, stdout
    check = "import busy.kept, busy.slow; print(busy.kept.kept_1(1), busy.slow.Slow().size())"
    done = subprocess.run([sys.executable, "-c", check], cwd=tmp_path / "out", capture_output=True, text=True)
    assert done.stdout.strip() == "[1, 3, 5, 7] 300", done.stderr

    time.sleep(2.5)  # nothing runs now: after the slack, --all takes everything
    after = json.loads(cache_cli("prune", "--all", "--json", cache=cache_dir).stdout)
    assert after["running_builds"] == 0 and not entries(cache), after


def test_a_killed_build_does_not_hold_eviction_back(tmp_path):
    cache_dir = tmp_path / "cache"
    src = write_package(tmp_path / "src", "doomed", {"slow": 400})
    worker = subprocess.Popen(
        [sys.executable, "-m", "services.compiler", "compile", str(src), "--out", str(tmp_path / "out"),
         "--cache", str(cache_dir), "--jobs", "1"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    leases = cache_dir / "state" / "leases"
    try:
        deadline = time.monotonic() + 60
        while not any(p.name.startswith(f"{worker.pid}-") for p in leases.glob("*")):
            assert time.monotonic() < deadline, "the build never took its lease"
            time.sleep(0.05)
        running = json.loads(cache_cli("stats", "--json", cache=cache_dir).stdout)["running_builds"]
        assert [b["pid"] for b in running] == [worker.pid]
    finally:
        os.killpg(worker.pid, signal.SIGKILL)  # the build and its compile workers
        worker.wait()
    assert list(leases.glob(f"{worker.pid}-*")), "a killed build leaves its lease file behind"

    done = cache_cli("prune", "--max-bytes", "1MiB", cache=cache_dir)
    assert done.returncode == 0, done.stderr
    assert re.search(r"removed [1-9]\d* leftover", done.stdout), done.stdout
    assert not list(leases.glob("*"))
    stats = cache_cli("stats", cache=cache_dir)
    assert "running     0 build(s)" in stats.stdout, stats.stdout


def test_cache_command_reads_the_compiler_settings_and_reports_bad_input(tmp_path):
    cache_dir = tmp_path / "from-settings"
    src = write_package(tmp_path / "src", "tiny", {"one": 1})
    env = {**os.environ, "KILN_COMPILER_CACHE": str(cache_dir), "KILN_COMPILER_CACHE_MAX_BYTES": "3GiB"}
    compiled = subprocess.run(
        [sys.executable, "-m", "services.compiler", "compile", str(src), "--out", str(tmp_path / "out")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert compiled.returncode == 0, compiled.stderr
    shown = subprocess.run(
        [sys.executable, "-m", "services.compiler", "cache", "stats"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert shown.returncode == 0, shown.stderr
    assert f"cache       {cache_dir}" in shown.stdout
    assert "bound       3.0 GiB" in shown.stdout
    assert "1 C (" in shown.stdout and "1 extensions" in shown.stdout

    missing = cache_cli("stats", cache=tmp_path / "nowhere")
    assert missing.returncode == 2 and "no compile cache at" in missing.stderr
    bad = cache_cli("prune", "--max-bytes", "lots", cache=cache_dir)
    assert bad.returncode == 2 and "'lots' is not a size" in bad.stderr
