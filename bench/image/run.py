"""Imager benchmark (not CI): Kiln's per-service images vs a naive generic `docker build`, one platform.

    source .kiln/dev.env && .venv/bin/python bench/image/run.py [--platform linux/amd64]

Both sides build the example package's services (Kiln also proves each one starts, as its worker
does), cold and after a one-file change (core/text.py),
and push to the registry. Reported: seconds per phase, and registry bytes (unique blobs) vs the sum
of image sizes. Ratios, not absolute seconds, are what compare across machines.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

from naive import naive_build_all  # noqa: E402

from services.imager.adapters.docker_engine import DockerEngineBuilder  # noqa: E402
from services.imager.adapters.docker_prover import DockerProver  # noqa: E402
from services.imager.build_context import service_context  # noqa: E402
from services.imager.dockerfile import LAUNCHER_SOURCE, ImageSpec, render_dockerfile  # noqa: E402
from services.imager.ports import RegistryAuth  # noqa: E402
from services.imager.tier_venv import TierVenvCache  # noqa: E402
from services.imager.tiers import resolve_tier  # noqa: E402
from shared.config.loader import load_config  # noqa: E402
from shared.platforms import DEFAULT, arch_of  # noqa: E402
from shared.registry import RegistryClient  # noqa: E402

EXAMPLE = ROOT / "examples" / "monorepo"
# The worker's default windows: a worker image must stay up 3 s, an HTTP one answer its health path.
PROVER = DockerProver(stay_up_s=3.0)
PROOF_SECONDS: list[float] = []


def compile_tree(src: Path, out: Path, platform: str) -> Path:
    command = [sys.executable, "-m", "services.compiler", "compile", str(src), "--out", str(out)]
    subprocess.run([*command, "--platform", platform], cwd=ROOT, check=True, capture_output=True)
    return out


def kiln_build_all(
    services, tree: Path, platform: str, tiers: TierVenvCache, builder, registry, repo_of, auth
):
    started = time.monotonic()
    digests = {}
    for name, service in services.items():
        tier = resolve_tier(service.tier, tree, str(EXAMPLE.parent / "operator" / "config.yaml"))
        tier_dir = tiers.prepare(tier, platform)
        spec = ImageSpec(
            base_image=base_image(platform),
            command=tuple(service.command),
            factories=tuple(service.factories),
            tier=service.tier,
            requirements_hash=tier.requirements_hash(platform),
            port=service.port,
            health_path=service.health,
            labels={"dev.kiln.service": name},
        )
        context = service_context(render_dockerfile(spec), tree, spec.factories, tier_dir, LAUNCHER_SOURCE)
        reference = f"{registry.host}/{repo_of(name)}:latest"
        built = builder.build(context, reference, platform=platform)
        proof_started = time.monotonic()
        proof = PROVER.prove(reference, platform=platform, port=service.port, health_path=service.health)
        assert proof.ok, proof.reason
        PROOF_SECONDS.append(time.monotonic() - proof_started)
        digests[name] = builder.push(built.reference, auth).digest
    return time.monotonic() - started, digests


def base_image(platform: str) -> str:
    arch = arch_of(platform)
    return os.environ.get(f"KILN_BASE_IMAGE_{arch.upper()}", f"kiln-base:bookworm-{arch}")


def registry_bytes(registry: RegistryClient, images: dict[str, tuple[str, str]]) -> tuple[int, int, int]:
    """(unique blob bytes in the registry, sum of image sizes, largest image) over `images`."""
    unique: dict[str, int] = {}
    sizes = []
    for repo, digest in images.values():
        _, _, body = registry.get_manifest(repo, digest)
        manifest = json.loads(body)
        blobs = [manifest["config"], *manifest["layers"]]
        sizes.append(sum(b["size"] for b in blobs))
        unique.update({b["digest"]: b["size"] for b in blobs})
    return sum(unique.values()), sum(sizes), max(sizes)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--platform", default=DEFAULT.name)
    args = parser.parse_args()
    registry = RegistryClient(
        os.environ["KILN_REGISTRY_URL"],
        os.environ["KILN_REGISTRY_USERNAME"],
        os.environ["KILN_REGISTRY_PASSWORD"],
    )
    auth = RegistryAuth(os.environ["KILN_REGISTRY_USERNAME"], os.environ["KILN_REGISTRY_PASSWORD"])
    run = uuid.uuid4().hex[:6]
    work = Path(tempfile.mkdtemp(prefix="kiln-bench-image-"))
    src = work / "src"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("__pycache__", "tests"))
    services = load_config(EXAMPLE.parent / "operator" / "config.yaml").package("demo").enabled_services()
    tree = compile_tree(src, work / "compiled", args.platform)
    tiers = TierVenvCache(work / "tiers")
    rows = []

    def kiln(phase: str, builder) -> dict[str, str]:
        seconds, digests = kiln_build_all(
            services, tree, args.platform, tiers, builder, registry, lambda n: f"bench{run}/kiln-{n}", auth
        )
        rows.append(("kiln", phase, seconds))
        rows.append(("", "  of which proof", sum(PROOF_SECONDS)))
        PROOF_SECONDS.clear()
        return digests

    def naive(phase: str, no_cache: bool) -> dict[str, str]:
        seconds, digests = naive_build_all(
            services, src, args.platform, base_image(args.platform), registry, run, auth, no_cache
        )
        rows.append(("naive", phase, seconds))
        return digests

    kiln("cold", DockerEngineBuilder(no_cache=True))
    naive("cold", True)
    text = src / "core" / "text.py"
    text.write_text(text.read_text() + f"\n\nBENCH_CHANGE = {run!r}\n")  # new per run: no stale cache
    compile_tree(src, work / "compiled", args.platform)  # one module recompiles; not timed
    kiln_digests = kiln("one-file change", DockerEngineBuilder())
    naive_digests = naive("one-file change", False)

    print(f"\nplatform {args.platform}, {len(services)} services\n")
    print(f"{'side':<6} {'phase':<16} {'seconds':>8}")
    for side, phase, seconds in rows:
        print(f"{side:<6} {phase:<16} {seconds:>8.1f}")
    for side, digests, repo in (("kiln", kiln_digests, "kiln"), ("naive", naive_digests, "naive")):
        images = {n: (f"bench{run}/{repo}-{n}", d) for n, d in digests.items()}
        stored, total, _ = registry_bytes(registry, images)
        print(f"{side}: registry holds {stored / 1e6:.1f} MB for images summing {total / 1e6:.1f} MB")
        by_tier: dict[str, dict] = {}
        for name, service in services.items():
            by_tier.setdefault(service.tier, {})[name] = images[name]
        for tier, members in sorted(by_tier.items()):
            stored, _, largest = registry_bytes(registry, members)
            print(f"  tier {tier:<8} {len(members)} services: {stored / largest:.2f} x the largest image")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
