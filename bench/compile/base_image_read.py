"""What reading a base image's Python costs stage compile (services/compiler/base_python): each
image read cold (empty cache: manifest, config, every layer downloaded and scanned, headers
exported) and then cached (the tag resolved again, the entry found), medians of --repeat rounds.
Reads the registry in KILN_REGISTRY_* (source .kiln/dev.env). Not run by CI.

    .venv/bin/python bench/compile/base_image_read.py [--repeat 3] [IMAGE@PLATFORM ...]
    (e.g. python:3.13-slim@linux/arm64)

Without images: bookworm's and trixie's kiln bases of the dev registry, both platforms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from services.compiler.base_python.reader import BaseImage
from services.compiler.bootstrap import base_pythons_from
from services.compiler.settings import CompilerSettings
from shared.platforms import PLATFORMS
from shared.settings import load_settings


def default_images(registry: str) -> list[tuple[str, str]]:
    return [
        (f"{registry}/kiln/base:{suite}-{p.arch}", p.name)
        for suite in ("bookworm", "trixie")
        for p in PLATFORMS
    ]


def timed(settings: CompilerSettings, cache: Path, image: str, platform: str) -> tuple[float, dict]:
    reader = base_pythons_from(settings.model_copy(update={"compiler_python_cache": str(cache)}))
    lines: list[str] = []
    started = time.perf_counter()
    with reader.held({platform: BaseImage(platform, image, "bench")}, lines.append) as found:
        took = time.perf_counter() - started
    return took, {"python": found[platform].soabi, "headers": found[platform].origin, "log": lines}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("images", nargs="*", help="IMAGE@PLATFORM (os/arch)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    settings = load_settings(CompilerSettings)
    wanted = [tuple(i.rsplit("@", 1)) for i in args.images] or default_images(settings.registry_url)
    results = []
    for image, platform in wanted:
        cold, cached, facts = [], [], {}
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory(prefix="kiln-bench-python-") as scratch:
                seconds, facts = timed(settings, Path(scratch), image, platform)
                cold.append(seconds)
                cached.append(timed(settings, Path(scratch), image, platform)[0])
                entries = [json.loads(e.read_text()) for e in Path(scratch).glob("*/entry.json")]
                facts["layer_mb"] = round(sum(e["layer_bytes"] for e in entries) / 1e6, 1)
        results.append(
            {
                "image": image,
                "platform": platform,
                "cold_s": round(statistics.median(cold), 3),
                "cached_ms": round(statistics.median(cached) * 1000, 1),
                **{k: v for k, v in facts.items() if k != "log"},  # layer_mb: base + headers images
            }
        )
        print(json.dumps(results[-1]), flush=True)


if __name__ == "__main__":
    main()
