"""What the audit stage costs per pushed image, against the scan of the same image, same run.

Baseline: the scan stage's trivy run (`TrivyCli.scan_image`, `--scanners secret` offline).
Measured: the audit stage's one run with all four modes (`TrivyCli.audit_image`), and, for the
design choice, four runs of one mode each. Warm layer cache (one unmeasured run first), each
variant `--rounds` times in turn; medians and ratios to the scan. Needs the dev registry and
trivy (`source .kiln/dev.env`); the image is any pushed reference (default: the quick start's
webhook image, or pass --image).

    python bench/scanner/audit_cost.py [--image REF] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from services.scanner.adapters.trivy import TrivyCli
from shared.events.scan import AUDIT_MODES
from shared.registry.transport import parse_hosts


def timed(run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    registry = os.environ.get("KILN_REGISTRY_URL", "127.0.0.1:5000")
    parser.add_argument("--image", default=f"{registry}/kiln/axion-webhook-demo:b1")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kiln-bench-audit-") as cache:
        trivy = TrivyCli(
            os.environ.get("KILN_TRIVY", "trivy"),
            cache,
            db_download=False,
            registry_credentials=(os.environ["KILN_REGISTRY_USERNAME"], os.environ["KILN_REGISTRY_PASSWORD"]),
            insecure_hosts=parse_hosts(os.environ.get("KILN_REGISTRY_INSECURE", "")),
        )
        variants = {
            "scan (baseline)": lambda: trivy.scan_image(args.image),
            "audit, 4 modes, 1 run": lambda: trivy.audit_image(args.image, list(AUDIT_MODES)),
            "audit, 4 runs of 1 mode": lambda: [trivy.audit_image(args.image, [m]) for m in AUDIT_MODES],
        }
        for run in variants.values():
            run()  # warm the layer cache for every analyser set
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, run in variants.items():
                times[name].append(timed(run))
    base = statistics.median(times["scan (baseline)"])
    print(f"image {args.image}, {args.rounds} rounds, warm cache")
    for name, values in times.items():
        median = statistics.median(values)
        print(
            f"{name:<26} median {median:6.2f} s  min {min(values):6.2f} s  x{median / base:5.2f} of the scan"
        )


if __name__ == "__main__":
    main()
