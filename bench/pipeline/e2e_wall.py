"""End-to-end wall time of the example package: a cold build (empty compile cache and imager
work dir: every module compiled, every tier venv prepared), then a one-file change in a factory
every service keeps (core), then one in a factory only the webhook service keeps.

    source .kiln/dev.env && python bench/pipeline/e2e_wall.py [--without-attest] [--imager-concurrency N]

--without-attest: the same stack with no attester process, the gate not waiting for the attest
fact and no signature check before deploy (the attest stage's cost is the difference).
--imager-concurrency N: each image worker runs N jobs at once (KILN_IMAGER_CONCURRENCY; 1 is how
workers ran before issue #17).
--env KEY=VALUE (repeatable): any other setting of every service, e.g. KILN_IMAGER_REUSE_PROOFS=false
(with --imager-concurrency 1: the imager as it was before issue #17, the baseline).

Runs its own stack (vhost, database, ports, state dir, container prefix) and removes it after.
Wall time = from the webhook POST to the build's `build.finished` as seen through the gateway.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts.stack import example
from scripts.stack.layout import Stack
from shared.processes import service_processes
from tests.e2e.conftest import free_port

WITHOUT_ATTEST = {"KILN_DEPLOYER_OPTIONAL_FACTS": "attest", "KILN_DEPLOYMENT_REQUIRE_SIGNATURE": "false"}


def without(service: str):
    return tuple(p for p in service_processes() if p.service != service)


def _option(name: str) -> str | None:
    args = sys.argv[1:]
    return args[args.index(name) + 1] if name in args else None


def main() -> None:
    without_attest = "--without-attest" in sys.argv[1:]
    concurrency = _option("--imager-concurrency")
    args = sys.argv[1:]
    extra = dict(args[i + 1].split("=", 1) for i, arg in enumerate(args) if arg == "--env")
    run = uuid.uuid4().hex[:6]
    with tempfile.TemporaryDirectory(prefix="kiln-bench-") as scratch:
        cold_caches = {
            "KILN_COMPILER_CACHE": f"{scratch}/compile-cache",
            "KILN_IMAGER_WORK_DIR": f"{scratch}/imager",
        }
        stack = Stack(
            state=Path(scratch) / "stack",
            vhost=f"kiln-bench-{run}",
            database=f"kiln_bench_{run}",
            gateway_port=free_port(),
            smtp_port=free_port(),
            prefix=f"kiln-bench-{run}-",
            env=dict(os.environ),
            overrides={
                **cold_caches,
                **(WITHOUT_ATTEST if without_attest else {}),
                **({"KILN_IMAGER_CONCURRENCY": concurrency} if concurrency else {}),
                **extra,
            },
            **({"kiln_processes": without("attester")} if without_attest else {}),
        )
        stack.start()
        try:
            figures = {}
            runs = (
                ("cold", None),
                ("one-file change", "core/text.py"),  # core: every service keeps it
                ("one service's file", "webhook/payload.py"),  # only the webhook service keeps it
            )
            for name, touch in runs:
                started = time.monotonic()
                (build_id,) = example.trigger(stack, touch=touch)
                status = example.follow(stack, build_id, timeout_s=1800)
                figures[name] = (time.monotonic() - started, status)
            print()
            for name, (seconds, status) in figures.items():
                label = f"{name}{' (no attest)' if without_attest else ''}"
                label += f" (imager concurrency {concurrency})" if concurrency else ""
                label += "".join(f" {key}={value}" for key, value in extra.items())
                print(f"end-to-end {label:28} {seconds:7.1f} s  ({status})")
        finally:
            stack.down()
            subprocess.run(["rabbitmqctl", "delete_vhost", stack.vhost], capture_output=True)
            if os.environ.get("KILN_BENCH_KEEP_DB"):  # for bench/pipeline/handoff.py on its builds
                print(f"kept database {stack.database}")
            else:
                subprocess.run(
                    ["mysql", "-uroot", "-e", f"DROP DATABASE IF EXISTS {stack.database}"],
                    capture_output=True,
                )


if __name__ == "__main__":
    main()
