"""`python -m shared.bus`: the operator's broker commands.

python -m shared.bus permissions [--allow-stage-replay]       each service user's grants (no secrets)
python -m shared.bus provision --admin-url amqp://admin:pw@host:5672/VHOST --credentials-dir DIR
        [--management-url http://admin:pw@host:15672] [--user-prefix kiln-] [--service-host H:P]
        [--passwords-from-env] [--allow-stage-replay] [--rotate] [--show-urls]

The operator's own command, so it reads its defaults from the environment itself (no service
settings class): KILN_BROKER_ADMIN_URL, KILN_BROKER_MANAGEMENT_URL, KILN_AMQP_PASSWORD_<SERVICE>.

`provision` declares the whole topology as the admin, then creates (or updates) one user per
service, `<prefix><service>`, with exactly the grants `permissions` shows, and writes each
service's KILN_AMQP_URL to DIR/<service>.env (mode 600). Passwords are generated, kept across
runs, or (--passwords-from-env) taken from KILN_AMQP_PASSWORD_<SERVICE>. See docs/operations.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from shared.bus import topology as t
from shared.bus.permissions import all_services
from shared.bus.provision import (
    ManagementApiAdmin,
    ProvisionError,
    RabbitmqctlAdmin,
    provision,
    vhost_of,
    with_vhost,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m shared.bus")
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser("permissions", help="print each service user's grants")
    show.add_argument("--allow-stage-replay", action="store_true")
    run = sub.add_parser("provision", help="declare the topology and create one broker user per service")
    # The admin's credentials may come from the environment, off the command line (compose).
    run.add_argument(
        "--admin-url",
        default=os.environ.get("KILN_BROKER_ADMIN_URL"),
        help="amqp URL of a user that may configure the vhost (default: $KILN_BROKER_ADMIN_URL)",
    )
    run.add_argument("--vhost", help="default: the admin URL's vhost")
    run.add_argument("--credentials-dir", type=Path, help="write <service>.env files here (mode 600)")
    run.add_argument(
        "--management-url",
        default=os.environ.get("KILN_BROKER_MANAGEMENT_URL"),
        help="manage users over the management API, not rabbitmqctl (default: $KILN_BROKER_MANAGEMENT_URL)",
    )
    run.add_argument(
        "--rabbitmqctl", default="rabbitmqctl", help="the rabbitmqctl command (default: on PATH)"
    )
    run.add_argument("--user-prefix", default="kiln-")
    run.add_argument("--service-host", help="host:port in the written URLs (default: the admin URL's)")
    run.add_argument(
        "--passwords-from-env",
        action="store_true",
        help="take each password from KILN_AMQP_PASSWORD_<SERVICE>",
    )
    run.add_argument(
        "--allow-stage-replay",
        action="store_true",
        help="let the gateway republish compile.completed, image.requested.*, image.pushed (stage replays)",
    )
    run.add_argument(
        "--rotate", action="store_true", help="new passwords even where a credentials file has one"
    )
    run.add_argument("--show-urls", action="store_true", help="print the service URLs, passwords included")
    return parser


def print_permissions(allow_stage_replay: bool) -> None:
    for perms in all_services(allow_stage_replay=allow_stage_replay):
        print(f"{perms.service}:\n  configure {perms.configure}")
        print(f"  write     {perms.write}\n  read      {perms.read}")
        for topic in perms.topics:
            print(f"  topic {topic.exchange:14} write {topic.write}\n  {'':20} read  {topic.read}")


def passwords_from_env() -> dict[str, str]:
    """Compose hands each service's password to the provisioner and to that service alike."""
    found = {}
    for spec in t.SERVICES:
        name = f"KILN_AMQP_PASSWORD_{spec.name.upper()}"
        value = os.environ.get(name, "")
        if len(value) < 16:
            raise ProvisionError(f"{name} is empty or shorter than 16 characters; set it in .env")
        found[spec.name] = value
    return found


def run_provision(args: argparse.Namespace) -> int:
    admin_url = with_vhost(args.admin_url, args.vhost) if args.vhost else args.admin_url
    users = (
        ManagementApiAdmin(args.management_url) if args.management_url else RabbitmqctlAdmin(args.rabbitmqctl)
    )
    given = passwords_from_env() if args.passwords_from_env else None
    done = asyncio.run(
        provision(
            admin_url,
            users,
            credentials_dir=args.credentials_dir,
            user_prefix=args.user_prefix,
            given_passwords=given,
            service_host=args.service_host,
            allow_stage_replay=args.allow_stage_replay,
            rotate=args.rotate,
        )
    )
    print(f"topology declared in vhost {vhost_of(admin_url)!r}", file=sys.stderr)
    for item in done:
        where = f" -> {item.credentials}" if item.credentials else ""
        print(f"user {item.user} for {item.service}{where}", file=sys.stderr)
        if args.show_urls:
            print(f"{item.service} {item.url}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "provision" and not args.admin_url:
        parser.error("provision needs --admin-url (or KILN_BROKER_ADMIN_URL)")
    if args.command == "permissions":
        print_permissions(args.allow_stage_replay)
        return 0
    try:
        return run_provision(args)
    except ProvisionError as exc:
        print(f"provision failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
