"""Disk use of image workers over many builds, with clean-up and without (not CI; issue #14).

    source .kiln/dev.env && flock /tmp/kiln-heavy.lock .venv/bin/python bench/imager/disk_use.py \
        [--builds 20] [--services webhook,report,scheduler,storage-worker] [--sides none,keep1,keep0] \
        [--builder docker|buildah] [--stay-up 1]

Each build is what a worker does for one commit of the example package: one image job per service
(linux/amd64) through run_image_job with the real builder, prover and registry: fetch the
artifact, build, prove, push, and (on the clean-up sides) the janitor after it. Every build is a
new commit: a file in the `core` factory changes, so the artifact digest and the `core` layer are
new, the tier venvs are not (a warm rebuild must reuse them).

Sides, one after the other in the same run, each with its own work dir and repositories:
`none` (no janitor: what workers did before), `keep1` (the default KILN_IMAGER_KEEP_PUSHED=1),
`keep0` (build hosts nobody deploys from), `wipe` (keep0 and no warm cache: what a clean-up that
wiped the work dir would cost, tier venvs prepared again every job). After every build: the
engine's disk use (Docker's `df`: image layers and containers, as `docker system df` counts them)
as a delta from the side's start, the work dir (du), and the buildah vfs store (du of
/var/lib/containers/storage). Per build time with and without clean-up, and the clean-up's own
time, are reported as ratios.
A side's images are removed at its end, so the next side starts from the same engine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import docker  # noqa: E402

from services.imager.cache_bound import BoundedCache  # noqa: E402
from services.imager.cleanup import CleanupPolicy, Janitor  # noqa: E402
from services.imager.image_job import ImagerDeps, JobContext, run_image_job  # noqa: E402
from services.imager.ports import RegistryAuth  # noqa: E402
from services.imager.tier_venv import TierVenvCache  # noqa: E402
from services.imager.worker_ledger import WorkerLedger  # noqa: E402
from shared.artifacts import pull_artifact, push_artifact  # noqa: E402
from shared.config.loader import load_config  # noqa: E402
from shared.events import StageFinished  # noqa: E402
from shared.events.compile import Artifact, ImageRequested  # noqa: E402
from shared.naming import image_repository  # noqa: E402
from shared.platforms import DEFAULT  # noqa: E402
from shared.registry import RegistryClient  # noqa: E402

EXAMPLE = ROOT / "examples" / "monorepo"
OPERATOR_CONFIG = EXAMPLE.parent / "operator" / "config.yaml"
PLATFORM = DEFAULT.name
BUILDAH_STORE = Path("/var/lib/containers/storage")


def du(path: Path) -> int:
    if not path.exists():
        return 0
    done = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True)
    return int(done.stdout.split()[0]) if done.returncode == 0 and done.stdout else 0


def engine_bytes(client) -> int:
    df = client.df()
    return int(df.get("LayersSize") or 0) + sum(int(c.get("SizeRw") or 0) for c in df.get("Containers") or [])


def compile_tree(scratch: Path) -> Path:
    """The example compiled once (as bench/image does: without its tests); builds differ after."""
    src, out = scratch / "src", scratch / "compiled"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("__pycache__", "tests"))
    command = [sys.executable, "-m", "services.compiler", "compile", str(src), "--out", str(out)]
    subprocess.run([*command, "--platform", PLATFORM], cwd=ROOT, check=True, capture_output=True)
    return out


def make_deps(args, side: str, work: Path, registry, auth, client):
    if args.builder == "buildah":
        from services.imager.adapters.buildah import BuildahBuilder
        from services.imager.adapters.buildah_cleanup import BuildahCleaner
        from services.imager.adapters.buildah_prover import BuildahProver

        builder, cleaner = BuildahBuilder(auth=auth, scratch_dir=work / "jobs"), BuildahCleaner()
        make_prover = lambda worker: BuildahProver(stay_up_s=args.stay_up, worker_id=worker)  # noqa: E731
    else:
        from services.imager.adapters.docker_cleanup import DockerEngineCleaner
        from services.imager.adapters.docker_engine import DockerEngineBuilder
        from services.imager.adapters.docker_prover import DockerProver

        builder, cleaner = DockerEngineBuilder(client), DockerEngineCleaner(client)
        make_prover = lambda worker: DockerProver(client, stay_up_s=args.stay_up, worker_id=worker)  # noqa: E731
    janitor = None
    ledger = WorkerLedger(work)
    if side != "none":
        ledger.claim()
        bound = 0 if side == "wipe" else args.cache_max_mb * 10**6
        cache = BoundedCache([work / "tiers", work / "artifacts"], bound)
        keep = 0 if side == "wipe" else int(side[-1])
        janitor = Janitor(cleaner, ledger, cache, work, CleanupPolicy(keep_pushed=keep))
        janitor.after_job = _timed(janitor.after_job)
    deps = ImagerDeps(
        builder=builder,
        prover=make_prover(ledger.worker_id),
        registry=registry,
        fetch_artifact=lambda a, dest: pull_artifact(a.reference, dest),
        tiers=TierVenvCache(work / "tiers"),
        work_dir=work,
        auth=auth,
        config_path=str(OPERATOR_CONFIG),
        janitor=janitor,
    )
    return deps, cleaner


CLEANUP_SECONDS: list[float] = []


def _timed(after_job):
    def timed(record):
        started = time.monotonic()
        try:
            return after_job(record)
        finally:
            CLEANUP_SECONDS.append(time.monotonic() - started)

    return timed


def run_side(args, side: str, tree: Path, services, registry, auth, client, scratch: Path) -> dict:
    work = scratch / side / "work"
    store = f"file://{scratch / side / 'store'}"
    run = uuid.uuid4().hex[:5]
    deps, cleaner = make_deps(args, side, work, registry, auth, client)
    start_engine, start_buildah = engine_bytes(client), du(BUILDAH_STORE)
    CLEANUP_SECONDS.clear()
    rows = []
    repositories = set()
    for build in range(1, args.builds + 1):
        (tree / "core" / "build_stamp.txt").write_text(f"{side} {build}\n")  # a new commit
        stored = push_artifact(tree, store=store, package="demo", build=f"b{build}", platform=PLATFORM)
        artifact = Artifact(platform=PLATFORM, reference=stored.reference, digest=stored.digest)
        pip_before = _tier_count(work)
        started = time.monotonic()
        for name in args.services:
            service = services[name]
            repository = image_repository(registry.host, "kiln", f"du{run}{side}", name, "demo", PLATFORM)
            repositories.add(repository)
            events: list = []
            job = ImageRequested(
                target=name,
                platform=PLATFORM,
                artifact=artifact,
                base_image=os.environ["KILN_BASE_IMAGE_AMD64"],
                tier=service.tier,
                factories=tuple(service.factories),
                command=tuple(service.command),
                port=service.port,
                health_path=service.health,
                repository=repository,
                tags=("latest", f"b{build}"),
            )
            run_image_job(
                job, JobContext(str(uuid.uuid4()), "demo", events.append, maybe_ran_before=False), deps
            )
            failed = [e for e in events if isinstance(e, StageFinished) and e.status != "succeeded"]
            assert not failed, failed[0].error
        seconds = time.monotonic() - started
        rows.append(
            {
                "build": build,
                "seconds": seconds,
                "engine": engine_bytes(client) - start_engine,
                "work": du(work),
                "buildah": du(BUILDAH_STORE) - start_buildah,
                "tiers_prepared": _tier_count(work) - pip_before,
            }
        )
        row = rows[-1]
        print(
            f"  {side:<5} build {build:>2}: {seconds:5.1f} s  engine +{row['engine'] / 1e6:7.1f} MB  "
            f"work dir {row['work'] / 1e6:6.1f} MB  buildah +{row['buildah'] / 1e6:6.1f} MB  "
            f"tiers prepared {row['tiers_prepared']}",
            flush=True,
        )
    cleanup_s = list(CLEANUP_SECONDS)
    if deps.janitor is not None:
        deps.janitor.ledger.release()
    for repository in repositories:  # the next side starts from the same engine
        cleaner.remove_references(cleaner.older_references(repository, 0))
    return {"side": side, "rows": rows, "cleanup_s": cleanup_s}


def _tier_count(work: Path) -> int:
    tiers = work / "tiers"
    return len([p for p in tiers.iterdir() if not p.name.startswith(".")]) if tiers.is_dir() else 0


def report(results: list[dict], args) -> None:
    print(
        f"\n{args.builds} builds x {len(args.services)} images ({', '.join(args.services)}), {args.builder}"
    )
    header = "side   warm s/build (median)  engine MB after 1/5/10/last   work dir MB last  buildah MB last"
    print(header + "  clean-up s/build")
    base = None
    for result in results:
        rows = result["rows"]
        warm = statistics.median(r["seconds"] for r in rows[1:]) if len(rows) > 1 else rows[0]["seconds"]
        base = base or warm
        marks = [rows[i - 1]["engine"] / 1e6 for i in (1, 5, 10, len(rows)) if i <= len(rows)]
        cleanup = statistics.median(result["cleanup_s"]) * len(args.services) if result["cleanup_s"] else 0.0
        print(
            f"{result['side']:<6} {warm:6.1f} ({warm / base:.2f}x)          "
            f"{' / '.join(f'{m:.0f}' for m in marks):<28} {rows[-1]['work'] / 1e6:8.1f}"
            f"         {rows[-1]['buildah'] / 1e6:8.1f}"
            f"         {cleanup:.2f} ({cleanup / warm:.1%} of a build)"
        )
        print(f"       cold first build {rows[0]['seconds']:.1f} s, tiers prepared after it: "
              f"{sum(r['tiers_prepared'] for r in rows[1:])}")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--builds", type=int, default=20)
    parser.add_argument("--services", default="webhook,report,scheduler,storage-worker")
    parser.add_argument("--sides", default="none,keep1,keep0")
    parser.add_argument("--builder", choices=["docker", "buildah"], default="docker")
    parser.add_argument("--stay-up", type=float, default=1.0, help="proof window of a worker image, s")
    parser.add_argument("--cache-max-mb", type=int, default=5 * 1024)
    args = parser.parse_args()
    args.services = args.services.split(",")
    registry = RegistryClient(
        os.environ["KILN_REGISTRY_URL"],
        os.environ["KILN_REGISTRY_USERNAME"],
        os.environ["KILN_REGISTRY_PASSWORD"],
    )
    auth = RegistryAuth(os.environ["KILN_REGISTRY_USERNAME"], os.environ["KILN_REGISTRY_PASSWORD"])
    client = docker.from_env(timeout=300)
    services = load_config(OPERATOR_CONFIG).package("demo").enabled_services()
    scratch = Path(tempfile.mkdtemp(prefix="kiln-bench-disk-"))
    try:
        tree = compile_tree(scratch)
        results = [
            run_side(args, side, tree, services, registry, auth, client, scratch)
            for side in args.sides.split(",")
        ]
        report(results, args)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        registry.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
