"""Operator CLI: `python -m shared.registry {list,tags,prune,gc-harbor}`.

Credentials come from KILN_REGISTRY_URL / KILN_REGISTRY_USERNAME / KILN_REGISTRY_PASSWORD /
KILN_REGISTRY_INSECURE (shared.settings). The imager's `registry-prune` command wraps `prune`.
Exit codes: 0 ok, 1 registry refused, 2 bad usage or settings, 3 credentials refused, 4 unreachable.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from shared.logging import setup_logging
from shared.registry.client import RegistryClient
from shared.registry.errors import RegistryAuthError, RegistryError, RegistryUnavailable
from shared.registry.harbor import HarborClient
from shared.registry.transport import parse_hosts
from shared.settings import KilnSettings, load_settings

_GC_POLL_SECONDS = 5


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m shared.registry", description=__doc__.splitlines()[0])
    parser.add_argument("--registry", help="host[:port] or URL (default: KILN_REGISTRY_URL)")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="list repositories")
    listing.add_argument("--harbor-project", help="list one Harbor project through Harbor's API")
    tags = commands.add_parser("tags", help="list the tags of a repository")
    tags.add_argument("--repo", required=True)
    prune = commands.add_parser("prune", help="keep the newest N builds (b<N> tags) of repositories")
    target = prune.add_mutually_exclusive_group(required=True)
    target.add_argument("--repo", action="append", help="repository (repeatable)")
    target.add_argument("--prefix", help="every repository whose name starts with this")
    prune.add_argument("--keep", type=int, required=True)
    prune.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    gc = commands.add_parser("gc-harbor", help="start Harbor garbage collection (frees pruned bytes)")
    gc.add_argument("--dry-run", action="store_true")
    gc.add_argument("--delete-untagged", action="store_true", help="also untagged artifacts (see docs)")
    gc.add_argument("--wait", action="store_true", help="poll until the GC job ends")
    return parser


def _client(args: argparse.Namespace, settings: KilnSettings, cls: type[RegistryClient]) -> RegistryClient:
    password = settings.registry_password.get_secret_value() if settings.registry_password else None
    registry = args.registry or settings.registry_url
    insecure_hosts = parse_hosts(settings.registry_insecure_hosts)
    return cls(registry, settings.registry_username, password, insecure_hosts=insecure_hosts)


def _run(args: argparse.Namespace, client: RegistryClient) -> int:
    if args.command == "list" and args.harbor_project:
        assert isinstance(client, HarborClient)
        print("\n".join(client.list_project_repositories(args.harbor_project)))
    elif args.command == "list":
        print("\n".join(client.list_repositories()))
    elif args.command == "tags":
        print("\n".join(client.list_tags(args.repo)))
    elif args.command == "prune":
        if args.keep < 1:
            print("--keep must be at least 1", file=sys.stderr)
            return 2
        repos = args.repo or [r for r in client.list_repositories() if r.startswith(args.prefix)]
        for repo in repos:
            print(client.prune(repo, args.keep, dry_run=args.dry_run).summary())
        if not args.dry_run:
            print("manifests deleted; the registry's garbage collection frees the bytes (docs/registry.md)")
    elif args.command == "gc-harbor":
        assert isinstance(client, HarborClient)
        gc_id = client.trigger_gc(delete_untagged=args.delete_untagged, dry_run=args.dry_run)
        print(f"Harbor GC started (job {gc_id})")
        while args.wait and gc_id is not None:
            status = client.gc_status(gc_id)
            print(f"  job {gc_id}: {status}")
            if status not in ("Pending", "Running", ""):
                return 0 if status == "Success" else 1
            time.sleep(_GC_POLL_SECONDS)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = load_settings(KilnSettings)
    setup_logging(settings.log_level, fmt=settings.log_format, secrets=settings.secret_values().values())
    logging.getLogger("httpx").setLevel("WARNING")  # one INFO line per HTTP request drowns the output
    harbor = args.command == "gc-harbor" or getattr(args, "harbor_project", None)
    try:
        with _client(args, settings, HarborClient if harbor else RegistryClient) as client:
            return _run(args, client)
    except RegistryAuthError as exc:
        print(f"{exc}\n(set KILN_REGISTRY_USERNAME / KILN_REGISTRY_PASSWORD)", file=sys.stderr)
        return 3
    except RegistryUnavailable as exc:
        print(f"{exc}\n(is the registry running? KILN_REGISTRY_URL={settings.registry_url})", file=sys.stderr)
        return 4
    except RegistryError as exc:
        print(str(exc), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
