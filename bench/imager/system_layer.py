"""System packages: a layer's cold and warm cost, its size, and what it adds to an image build
(not CI; issue #16).

    source .kiln/dev.env && flock /tmp/kiln-heavy.lock .venv/bin/python bench/imager/system_layer.py \
        --packages imagemagick [--platforms linux/amd64,linux/arm64] [--build-image]

Per platform, in a fresh work dir, with the real parts (this host's apt and mirror, the Docker
Engine, the base images of KILN_BASE_IMAGE_<ARCH>): the package lists' first refresh, the layer
built cold (resolve, download, unpack: what the first job asking for the set pays), then the same
request again (warm: the memo, no apt). Sizes: the packages apt added, the bytes unpacked (each
file once) and gzip -6 of the layer's tar (about what the registry stores). With --build-image:
the build context of a one-factory service image with the layer, and a Docker build of it twice
(cold: the engine has no such layer yet; warm: a rebuild, everything cached), then removed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from services.imager.adapters.docker_engine import DockerEngineBuilder  # noqa: E402
from services.imager.apt_archive import AptArchive, AptPolicy  # noqa: E402
from services.imager.build_context import service_context  # noqa: E402
from services.imager.dockerfile import LAUNCHER_SOURCE, ImageSpec, render_dockerfile  # noqa: E402
from services.imager.system_layer import SystemLayerCache, SystemRequest, _bytes  # noqa: E402
from shared.platforms import PLATFORM_NAMES, arch_of  # noqa: E402


def measure(
    platform: str, packages: tuple[str, ...], build_image: bool, builder: DockerEngineBuilder
) -> dict:
    base = os.environ[f"KILN_BASE_IMAGE_{arch_of(platform).upper()}"]
    lines: list[str] = []
    row: dict = {"platform": platform}
    with tempfile.TemporaryDirectory(prefix="kiln-bench-system-") as work:
        cache = SystemLayerCache(Path(work) / "system", Path(work) / "apt", AptPolicy(), builder)
        started = time.monotonic()
        with AptArchive(Path(work) / "apt", arch_of(platform), AptPolicy()).lists(lines.append):
            pass
        row["lists_s"] = time.monotonic() - started
        request = SystemRequest(packages, {name: ("bench",) for name in packages})
        started = time.monotonic()
        layer = cache.prepare(request, base, platform, lines.append)
        row["cold_s"] = time.monotonic() - started
        started = time.monotonic()
        assert cache.prepare(request, base, platform, lines.append) == layer
        row["warm_ms"] = (time.monotonic() - started) * 1000
        row["packages"] = next(
            int(line.split(": ")[1].split()[0]) for line in lines if "packages to unpack" in line
        )
        row["unpacked_mb"] = _bytes(layer) / 1e6
        tar = subprocess.run(["tar", "-C", str(layer), "-c", "."], capture_output=True, check=True).stdout
        row["gzip_mb"] = len(subprocess.run(["gzip", "-6"], input=tar, capture_output=True).stdout) / 1e6
        if build_image:
            row.update(_image_builds(builder, base, platform, packages, layer, Path(work)))
    return row


def _image_builds(builder, base, platform, packages, layer: Path, work: Path) -> dict:
    (work / "art" / "app").mkdir(parents=True)
    (work / "art" / "app" / "__init__.py").write_text("")
    spec = ImageSpec(
        base_image=base, command=("python3", "-m", "app"), factories=("app",), system_packages=packages,
        system_layer=layer.name,
    )  # fmt: skip
    reference = f"kiln-bench-system:{uuid.uuid4().hex[:8]}"
    row = {}
    try:
        for run in ("build_cold_s", "build_warm_s"):
            started = time.monotonic()
            context = service_context(
                render_dockerfile(spec), work / "art", ("app",), None, LAUNCHER_SOURCE, layer
            )
            row["context_mb"] = len(context) / 1e6
            built = builder.build(context, reference, platform=platform)
            row[run] = time.monotonic() - started
            row["image_mb"] = built.size_bytes / 1e6
    finally:
        builder.remove(reference)
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--packages", default="imagemagick")
    parser.add_argument("--platforms", default=",".join(PLATFORM_NAMES))
    parser.add_argument("--build-image", action="store_true")
    args = parser.parse_args()
    builder = DockerEngineBuilder()
    packages = tuple(sorted(args.packages.split(",")))
    for platform in args.platforms.split(","):
        row = measure(platform, packages, args.build_image, builder)
        print(
            f"{','.join(packages)} {platform}: {row['packages']} packages, "
            f"{row['unpacked_mb']:.1f} MB unpacked, "
            f"{row['gzip_mb']:.1f} MB gzip; lists {row['lists_s']:.1f} s, cold layer {row['cold_s']:.1f} s, "
            f"warm {row['warm_ms']:.1f} ms"
            + (
                f"; context {row['context_mb']:.0f} MB, image {row['image_mb']:.0f} MB, build cold "
                f"{row['build_cold_s']:.1f} s, warm {row['build_warm_s']:.1f} s"
                if args.build_image
                else ""
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
