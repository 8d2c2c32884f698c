"""Compile benchmark (not CI): kiln's engine vs plain `cythonize -j` + `build_ext --parallel`.

    python bench/compile/run.py [--small] [--scenarios kiln,baseline,arm64] [--work DIR]

Scenarios, all on the same generated corpus in the same run:
  kiln      cold (empty cache), no-change, one-file change (amd64)
  warm      no-change and one-file change with a seeded cache (full scale without a cold build)
  baseline  `cythonize -j N` then `setup.py build_ext --parallel N` (CFLAGS=-O2 -g0, as kiln)
  arm64     cold amd64-only vs cold arm64-only (cross-compiled), each from an empty cache
Results: a table on stdout and JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import FULL, SMALL, generate  # noqa: E402

from services.compiler.engine import ModuleCache, compile_tree  # noqa: E402
from services.compiler.engine.build import PYTHON_ABI, _extension_key, _has_no_code  # noqa: E402
from services.compiler.engine.cache import digest, place  # noqa: E402
from services.compiler.engine.cc import toolchain_for  # noqa: E402
from services.compiler.engine.cythonize import DIRECTIVES, cython_fingerprint  # noqa: E402
from services.compiler.engine.tree import discover  # noqa: E402
from shared.platforms import AMD64, ARM64, arch_of  # noqa: E402

JOBS = os.cpu_count() or 1


CPUACCT = Path("/sys/fs/cgroup/cpuacct")  # cgroup v1, as on our machines


def join_cpu_group() -> Path | None:
    """Put this process, and so everything it starts from now on, in a cgroup of its own: the
    engine's pool workers are children of multiprocessing's forkserver, which rusage never sees."""
    group = CPUACCT / f"kiln-bench-compile-{os.getpid()}"
    try:
        group.mkdir(exist_ok=True)
        (group / "cgroup.procs").write_text(str(os.getpid()))
    except OSError:
        return None
    return group


CPU_GROUP: Path | None = None


def cpu_seconds() -> float:
    """CPU time (user + system) of this bench and everything it started. Other jobs on a shared
    machine stretch wall time far more than this, so each cold figure is reported both ways."""
    if CPU_GROUP is not None:
        return int((CPU_GROUP / "cpuacct.usage").read_text()) / 1e9
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed_compile(corpus: Path, out: Path, cache: Path, platform: str) -> tuple[float, object]:
    started = time.perf_counter()
    report = compile_tree(corpus, out, platforms=[platform], jobs=JOBS, cache=ModuleCache(cache))
    elapsed = time.perf_counter() - started
    assert report.ok, [m for m in report.modules if m.status == "error"][:3]
    return elapsed, report


def kiln_scenarios(corpus: Path, work: Path) -> dict:
    cache, out = work / "cache-kiln", work / "out-kiln"
    shutil.rmtree(cache, ignore_errors=True)
    cpu_before = cpu_seconds()
    cold, _ = timed_compile(corpus, out, cache, AMD64.name)
    cold_cpu = cpu_seconds() - cpu_before
    no_change, _ = timed_compile(corpus, out, cache, AMD64.name)
    changed = sorted(corpus.rglob("mod_*.py"))[0]
    changed.write_text(changed.read_text() + "\n\ndef added_by_bench():\n    return 1\n")
    one_file, report = timed_compile(corpus, out, cache, AMD64.name)
    own = next(m.duration_ms for m in report.modules if m.status == "ok" and m.duration_ms) / 1000
    return {
        "cold_s": cold,
        "cold_cpu_s": cold_cpu,
        "no_change_s": no_change,
        "one_file_s": one_file,
        "one_file_module_s": own,
    }


def warm_scenarios(corpus: Path, work: Path) -> dict:
    """No-change and one-file change at full scale without paying a full cold build first.

    The cache is seeded under exactly the keys the engine computes, each entry a link to one real
    extension (the engine never imports what it links). What is measured is the engine's real
    work on these paths: hash every module, look up, link the tree, publish; plus one real
    compile for the one-file change."""
    cache = ModuleCache(work / "cache-warm")
    shutil.rmtree(cache.root, ignore_errors=True)
    sample_src = work / "sample-src" / "sample"
    sample_src.mkdir(parents=True, exist_ok=True)
    (sample_src / "__init__.py").write_text("VALUE = 1\n")
    timed_compile(sample_src.parent, work / "sample-out", cache.root, AMD64.name)
    sample = next((cache.root / "so").rglob("*.so"))
    toolchain, fingerprint = toolchain_for(AMD64.name), cython_fingerprint()
    for module in discover(corpus).modules:
        source = module.path.read_bytes()
        if not _has_no_code(source):
            c_key = digest(source, module.module, fingerprint, PYTHON_ABI)
            place(sample, cache.extension_path(_extension_key(c_key, toolchain)))
    out = work / "out-warm"
    shutil.rmtree(out, ignore_errors=True)
    first_publish, _ = timed_compile(corpus, out, cache.root, AMD64.name)
    no_change, report = timed_compile(corpus, out, cache.root, AMD64.name)
    assert all(m.status == "cached" for m in report.modules)
    changed = sorted(corpus.rglob("mod_*.py"))[0]
    changed.write_text(changed.read_text() + "\n\ndef added_by_bench():\n    return 1\n")
    one_file, report = timed_compile(corpus, out, cache.root, AMD64.name)
    own = next(m.duration_ms for m in report.modules if m.status == "ok" and m.duration_ms) / 1000
    return {
        "no_change_empty_out_s": first_publish,
        "no_change_s": no_change,
        "one_file_s": one_file,
        "one_file_module_s": own,
    }


def baseline(corpus: Path, work: Path) -> dict:
    tree = work / "baseline"
    shutil.rmtree(tree, ignore_errors=True)
    shutil.copytree(corpus, tree)
    directives = [arg for k, v in DIRECTIVES.items() for arg in ("-X", f"{k}={v}")]
    sources = [str(p.relative_to(tree)) for p in sorted(tree.rglob("*.py"))]
    setup = tree / "setup.py"
    setup.write_text(
        "import glob\nfrom setuptools import Extension, setup\n"
        "mods = [p[:-2] for p in glob.glob('**/*.c', recursive=True)]\n"
        "setup(name='bench', ext_modules=[Extension("
        "m.replace('/', '.').removesuffix('.__init__'), [m + '.c']) for m in mods])\n"
    )
    env = {**os.environ, "CFLAGS": "-O2 -g0"}
    cpu_before = cpu_seconds()
    started = time.perf_counter()
    cythonize = [str(Path(sys.executable).parent / "cythonize"), "-j", str(JOBS), "-3", *directives]
    subprocess.run([*cythonize, *sources], cwd=tree, check=True, capture_output=True)
    cythonized = time.perf_counter()
    subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace", "--parallel", str(JOBS)],
        cwd=tree,
        check=True,
        capture_output=True,
        env=env,
    )
    done = time.perf_counter()
    return {
        "cold_s": done - started,
        "cold_cpu_s": cpu_seconds() - cpu_before,
        "cythonize_s": cythonized - started,
        "build_ext_s": done - cythonized,
    }


def arm64_vs_amd64(corpus: Path, work: Path) -> dict:
    figures = {}
    for platform in (AMD64.name, ARM64.name):
        cache = work / f"cache-{arch_of(platform)}"
        shutil.rmtree(cache, ignore_errors=True)
        figures[platform], _ = timed_compile(corpus, work / f"out-{arch_of(platform)}", cache, platform)
    return {"amd64_cold_s": figures[AMD64.name], "arm64_cold_s": figures[ARM64.name]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--scenarios", default="kiln,baseline,arm64")
    parser.add_argument("--repeat", type=int, default=1, help="alternate the scenarios N times")
    parser.add_argument("--work", type=Path, default=Path("/tmp/kiln-bench-compile"))
    args = parser.parse_args()
    global CPU_GROUP
    CPU_GROUP = join_cpu_group()
    if CPU_GROUP is None:
        print("no writable cpuacct cgroup: CPU figures miss the engine's pool workers", file=sys.stderr)
    shape = SMALL if args.small else FULL
    corpus = args.work / "corpus"
    modules = len(generate(corpus, **shape))
    runs: dict[str, list[dict]] = {}
    for _round in range(args.repeat):
        for scenario in args.scenarios.split(","):
            generate(corpus, **shape)  # every scenario starts from the pristine corpus
            runner = {
                "kiln": kiln_scenarios,
                "warm": warm_scenarios,
                "baseline": baseline,
                "arm64": arm64_vs_amd64,
            }[scenario]
            runs.setdefault(scenario, []).append(runner(corpus, args.work))
            print(scenario, json.dumps(runs[scenario][-1]), flush=True)
    # Shared machines are noisy: report the median of each figure over the rounds.
    results: dict = {"corpus": {**shape, "modules": modules}, "jobs": JOBS, "rounds": args.repeat}
    for scenario, rounds in runs.items():
        results[scenario] = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    results["runs"] = runs
    if "kiln" in results and "baseline" in results:
        results["cold_vs_baseline"] = results["kiln"]["cold_s"] / results["baseline"]["cold_s"]
        results["cold_cpu_vs_baseline"] = results["kiln"]["cold_cpu_s"] / results["baseline"]["cold_cpu_s"]
    if "arm64" in results:
        results["arm64_vs_amd64"] = results["arm64"]["arm64_cold_s"] / results["arm64"]["amd64_cold_s"]
    name = f"compile-{'small' if args.small else 'full'}-{int(time.time())}.json"
    out = REPO / "bench" / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps({k: v for k, v in results.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    main()
