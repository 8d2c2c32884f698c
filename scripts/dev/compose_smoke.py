"""The Python half of `./kiln-dev compose-smoke` (scripts/dev/compose_smoke.sh runs docker-compose).

    python scripts/dev/compose_smoke.py prepare --state DIR [--setting NAME=VALUE ...]
        secrets (generated once, mode 600), the example's PEM keys and git repository, and
        DIR/compose.env: the variables docker-compose.yml reads
    python scripts/dev/compose_smoke.py build --state DIR --gateway URL --registry HOST:PORT
        a signed Bitbucket Cloud push of the example to the gateway, the build followed to its
        end, then what it left in the registry; exit 0 when it succeeded

The push and the following are the quick start's own (scripts/stack/example.py).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts.stack import example
from shared.bus.topology import SERVICES

REGISTRY_USER = "kiln"
IMAGE_UID = 10001  # the Dockerfile's user `kiln`
# Generated per state directory; the names docker-compose.yml substitutes (.env.example).
GENERATED_SECRETS = (
    "RABBITMQ_PASSWORD",
    *(f"KILN_AMQP_PASSWORD_{spec.name.upper()}" for spec in SERVICES),
    "MYSQL_PASSWORD",
    "MYSQL_ROOT_PASSWORD",
    "KILN_REGISTRY_PASSWORD",
    "KILN_API_TOKEN",
    "KILN_BITBUCKET_CLOUD_SECRET",
    "KILN_BITBUCKET_SERVER_SECRET",
    "KILN_GITHUB_SECRET",
)


@dataclass
class ComposeStack:
    """What example.trigger/follow need of a stack: its repo, state dir, secrets and gateway."""

    state: Path
    gateway_url: str = ""
    example: example.Example = example.DEMO  # the compose stack's operator config is demo's

    @property
    def repo(self) -> Path:
        return self.state / "repo"

    @property
    def keys_root(self) -> Path:
        return self.state / "keys"

    def generated(self) -> dict[str, str]:
        path = self.state / "secrets.json"
        if not path.is_file():
            self.state.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
        known = json.loads(path.read_text() or "{}")
        # 32 random bytes each (the gateway refuses shorter); a state dir from before a name was
        # added gets that name generated now.
        values = {name: known.get(name) or secrets.token_urlsafe(32) for name in GENERATED_SECRETS}
        if values != known:
            path.write_text(json.dumps(values))
        return values

    def secrets(self) -> dict[str, str]:
        values = self.generated()
        return {
            "api_token": values["KILN_API_TOKEN"],
            "webhook_secret": values["KILN_BITBUCKET_CLOUD_SECRET"],
        }


def prepare(stack: ComposeStack, settings: list[str]) -> None:
    from shared.config import generate_keys

    values = stack.generated()
    if not (stack.keys_root / "demo" / "demo_private.pem").is_file():
        generate_keys(stack.keys_root / "demo", "demo")
    # Read through a read-only mount by the services, which run as the image's user: theirs,
    # still private (the compose file's KILN_KEYS_ROOT, docs/operations.md).
    for path in [stack.keys_root, *stack.keys_root.rglob("*")]:
        os.chown(path, IMAGE_UID, IMAGE_UID)
        path.chmod(0o700 if path.is_dir() else 0o600)
    example.prepare_repo(stack.repo)
    lines = [f"{name}={value}" for name, value in values.items()]
    lines += [f"KILN_REGISTRY_USERNAME={REGISTRY_USER}", f"KILN_KEYS_ROOT={stack.keys_root}"]
    lines += [f"KILN_SMOKE_REPO={stack.repo}", *settings]
    env_file = stack.state / "compose.env"
    env_file.touch(mode=0o600)
    env_file.write_text("\n".join(lines) + "\n")
    print(f"    {env_file} (mode 600), keys in {stack.keys_root}, repository {stack.repo}")


def registry_report(registry: str, password: str) -> tuple[list[str], dict[str, list[str]]]:
    """The repositories of the stack's registry and their tags."""
    with httpx.Client(base_url=f"http://{registry}", auth=(REGISTRY_USER, password), timeout=10) as client:
        repositories = client.get("/v2/_catalog").raise_for_status().json()["repositories"]
        tags = {}
        for repo in repositories:
            response = client.get(f"/v2/{repo}/tags/list")  # 404: a push that never finished
            tags[repo] = sorted(response.json().get("tags") or []) if response.is_success else []
    return repositories, tags


def build(stack: ComposeStack, registry: str) -> int:
    started = time.monotonic()
    build_ids = example.trigger(stack)
    status = example.follow(stack, build_ids[0], timeout_s=1800)
    wall = time.monotonic() - started
    print(f"==> build {build_ids[0]} {status} in {wall:.1f}s (push to build.finished)", flush=True)
    repositories, tags = registry_report(registry, stack.generated()["KILN_REGISTRY_PASSWORD"])
    images = [repo for repo in repositories if not repo.startswith("kiln/artifacts")]
    print(f"==> registry: {len(repositories)} repositories")
    for repo in images:
        print(f"    {repo}: {', '.join(tags[repo])}")
    (stack.state / "build-result.json").write_text(
        json.dumps({"build_id": build_ids[0], "status": status, "wall_s": round(wall, 1), "tags": tags})
    )
    return 0 if status == "succeeded" else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="compose_smoke", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["prepare", "build"])
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--gateway", default="http://127.0.0.1:8000")
    parser.add_argument("--registry", default="127.0.0.1:5000")
    parser.add_argument("--setting", action="append", default=[], help="NAME=VALUE for compose.env")
    args = parser.parse_args(argv)
    stack = ComposeStack(state=args.state.resolve(), gateway_url=args.gateway)
    if args.command == "prepare":
        prepare(stack, args.setting)
        return 0
    return build(stack, args.registry)


if __name__ == "__main__":
    raise SystemExit(main())
