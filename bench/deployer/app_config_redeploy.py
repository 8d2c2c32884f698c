"""What a config-only redeploy costs on the compose substrate, now that only the containers whose
definition changed are recreated (issue #16 item 4), against recreating every container (what
every redeploy did before, and what a change of Kiln's own trimmed config still does).

The example's webhook, scheduler and storage-worker images (source factories, FROM the local base
image, as tests/integration/test_deployer_app_config.py builds them) on the local Docker Engine;
`ComposeSubstrate.apply` timed alone (no verify), `--rounds` times each, medians:

- nothing changed (0 of 3 recreated)
- one app config section changed (`mqtt`: the webhook alone reads it, 1 of 3)
- `database` changed (webhook and scheduler read it, 2 of 3)
- Kiln's own config changed (a feature flag: every app container mounts it, 3 of 3)

Also the stage-config side: trimming the example's config/app.yaml (`trimmed_document`).

    source .kiln/dev.env && PYTHONPATH=. python bench/deployer/app_config_redeploy.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import docker

from services.deployer.adapters.docker_compose import ComposeSubstrate
from services.deployer.scaffold import scaffold_inputs
from services.deployer.topology import plan_topology
from shared.config import generate_keys
from shared.config.app_config import trimmed_document
from tests.integration.test_deployer_compose import _context
from tests.unit.app_config_fixtures import APP_YAML, app_config, operator_data

IMAGES = {
    "webhook": (["core", "webhook"], "webhook.server"),
    "scheduler": (["core"], "core.scheduler"),
    "storage-worker": (["core", "storage"], "storage.worker"),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    client = docker.from_env()
    prefix = f"kb{uuid.uuid4().hex[:6]}-"
    tags = {}
    for service, (factories, module) in IMAGES.items():
        tags[service] = f"{prefix}demo-{service}:bench"
        client.images.build(
            fileobj=_context(factories, module), custom_context=True, tag=tags[service], rm=True
        )
    with tempfile.TemporaryDirectory(prefix="kiln-bench-appcfg-") as work:
        generate_keys(Path(work) / "keys", "demo")
        data = operator_data()
        data["packages"]["demo"]["services"]["scheduler"]["app_config_sections"] = ["database"]
        env = {"KILN_KEYS_DIR": f"{work}/keys", "KILN_FEATURES_REPORTS": "false"}
        substrate = ComposeSubstrate(client, state_dir=Path(work) / "state", prefix=prefix)
        text = APP_YAML.read_text()
        variants = {  # round n -> (config env, app config text)
            "nothing changed": lambda n: (env, text),
            "mqtt changed (webhook)": lambda n: (env, text.replace("topic: demo/events", f"topic: demo/{n}")),
            "database changed (webhook, scheduler)": lambda n: (
                env,
                text.replace("name: demo", f"name: d{n}"),
            ),
            "Kiln's config changed (all)": lambda n: ({**env, "KILN_FEATURES_EXTRA": str(n % 2 == 0)}, text),
        }
        try:
            inputs = _inputs(data, env, text, tags)
            substrate.apply(inputs, 1)  # the first deploy, not measured
            times: dict[str, list[float]] = {name: [] for name in variants}
            recreated: dict[str, int] = {}
            for n in range(args.rounds):
                for name, variant in variants.items():
                    inputs = _inputs(data, *variant(n), tags)
                    started = time.perf_counter()
                    detail = substrate.apply(inputs, 2 + n)
                    times[name].append(time.perf_counter() - started)
                    recreated[name] = len(detail["containers"])
                    substrate.apply(_inputs(data, env, text, tags), 2 + n)  # back, not measured
            for name, samples in times.items():
                print(
                    f"{name:<40} {recreated[name]} of 3 recreated  median {statistics.median(samples):.2f} s"
                )
        finally:
            substrate.teardown(plan_topology(app_config(env, data), "demo"))
            for tag in tags.values():
                client.images.remove(tag, force=True)
    pkg = app_config(data=data).package("demo")
    source = APP_YAML.read_bytes()
    started = time.perf_counter()
    for _ in range(1000):
        trimmed_document(source, "demo", pkg)
    per_file_ms = (time.perf_counter() - started) / 1000 * 1000
    print(f"trimming config/app.yaml ({len(source)} bytes): {per_file_ms:.3f} ms per file")


def _inputs(data, env, app_yaml, tags):
    cfg = app_config(env, data)
    document = trimmed_document(app_yaml.encode(), "demo", cfg.package("demo")).decode()
    secrets = {"DEMO_DATABASE_PASSWORD": "bench-secret"}
    return scaffold_inputs(
        cfg,
        "demo",
        config_path="config.yaml",
        env={},
        images=tags,
        app_document=document,
        secret_values=secrets,
    )


if __name__ == "__main__":
    main()
