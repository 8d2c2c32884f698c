"""Makes the broker users of `shared.bus.permissions` real, and declares the topology once as admin.

Two ways to manage users, since RabbitMQ's AMQP port cannot: `rabbitmqctl` on the broker's host
(no plugin needed; what the dev stack and the tests use), or the management HTTP API of a broker
that has the `rabbitmq_management` plugin (the compose stack's `rabbitmq:*-management` image).

Users and grants go to the broker as one definitions import (`rabbitmqctl import_definitions`
or `POST /api/definitions`): only salted hashes of the passwords travel, on stdin or in a request
body, never on a command line. Each password is generated (`secrets.token_urlsafe(32)`) unless
its credentials file already holds one (re-provisioning keeps running services connected;
`rotate` makes new ones) or the operator hands them in (compose: one variable per service). They
are written only to the credentials files (mode 600), never printed unless the operator asks.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import aio_pika
import httpx

from shared.bus.declare import declare_topology
from shared.bus.permissions import UserPermissions, all_services


class UserAdmin(Protocol):
    def load(self, definitions: dict[str, Any]) -> None: ...


class ProvisionError(Exception):
    """What failed, and where: the broker's own message."""


def password_hash(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's `rabbit_password_hashing_sha256`: base64(salt + sha256(salt + password))."""
    salt = salt if salt is not None else secrets.token_bytes(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def definitions(vhost: str, grants: list[tuple[str, str, UserPermissions]]) -> dict[str, Any]:
    """Users (salted hashes only), permissions and topic permissions as RabbitMQ definitions:
    one import instead of dozens of commands, and no password on any wire or command line.
    An import adds and updates; it removes nothing else on the broker."""
    users, permissions, topics = [], [], []
    for user, password, perms in grants:
        users.append(
            {
                "name": user,
                "password_hash": password_hash(password),
                "hashing_algorithm": "rabbit_password_hashing_sha256",
                "tags": [],
            }
        )
        permissions.append(
            {
                "user": user,
                "vhost": vhost,
                "configure": perms.configure,
                "write": perms.write,
                "read": perms.read,
            }
        )
        topics += [
            {"user": user, "vhost": vhost, "exchange": tp.exchange, "write": tp.write, "read": tp.read}
            for tp in perms.topics
        ]
    return {"users": users, "permissions": permissions, "topic_permissions": topics}


@dataclass
class RabbitmqctlAdmin:
    """`rabbitmqctl import_definitions` on the broker's host (where the node's Erlang cookie is)."""

    command: str = "rabbitmqctl"

    def load(self, definitions: dict[str, Any]) -> None:
        result = subprocess.run(
            [self.command, "--quiet", "import_definitions", "--format", "json"],
            input=json.dumps(definitions),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise ProvisionError(f"rabbitmqctl import_definitions failed: {result.stderr or result.stdout}")


@dataclass
class ManagementApiAdmin:
    """The management HTTP API (`http://admin:password@host:15672`): POST /api/definitions."""

    url: str
    transport: httpx.BaseTransport | None = None

    def load(self, definitions: dict[str, Any]) -> None:
        parts = urlsplit(self.url)
        netloc = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
        base = urlunsplit(parts._replace(netloc=netloc, path=parts.path.rstrip("/")))
        auth = (unquote(parts.username or ""), unquote(parts.password or ""))
        with httpx.Client(auth=auth, timeout=60, transport=self.transport) as client:
            reply = client.post(f"{base}/api/definitions", json=definitions)
        if reply.status_code not in (200, 201, 204):
            raise ProvisionError(
                f"management API POST /api/definitions answered {reply.status_code}: {reply.text[:300]}"
            )


@dataclass(frozen=True)
class Provisioned:
    service: str
    user: str
    url: str
    credentials: Path | None


def service_url(admin_url: str, vhost: str, user: str, password: str, host: str | None) -> str:
    """The service's KILN_AMQP_URL: its user on the admin's broker (or `host`), in `vhost`."""
    parts = urlsplit(admin_url)
    where = host or parts.hostname + (f":{parts.port}" if parts.port else "")
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{where}"
    return urlunsplit(parts._replace(netloc=netloc, path="/" + quote(vhost, safe="")))


def with_vhost(amqp_url: str, vhost: str) -> str:
    return urlunsplit(urlsplit(amqp_url)._replace(path="/" + quote(vhost, safe="")))


def vhost_of(amqp_url: str) -> str:
    path = urlsplit(amqp_url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def credentials_file(directory: Path, service: str) -> Path:
    return directory / f"{service}.env"


def read_password(path: Path) -> str | None:
    """The password in an existing credentials file (`KILN_AMQP_URL=amqp://user:pw@…`)."""
    if not path.is_file():
        return None
    for line in path.read_text().splitlines():
        if line.startswith("KILN_AMQP_URL="):
            return unquote(urlsplit(line.split("=", 1)[1]).password or "") or None
    return None


def write_credentials(path: Path, url: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)  # before the secret is in it, whatever the umask
    path.write_text(f"KILN_AMQP_URL={url}\n")


async def declare_as_admin(admin_url: str) -> None:
    try:
        connection = await aio_pika.connect(admin_url)
    except Exception as exc:
        where = urlsplit(admin_url)
        raise ProvisionError(
            f"the admin user {where.username!r} could not open vhost {vhost_of(admin_url)!r} on "
            f"{where.hostname}: {type(exc).__name__}: {exc} (does the vhost exist, may the user use it?)"
        ) from None
    try:
        await declare_topology(await connection.channel())
    finally:
        await connection.close()


async def provision(
    admin_url: str,
    users: UserAdmin,
    *,
    credentials_dir: Path | None,
    user_prefix: str = "kiln-",
    given_passwords: Mapping[str, str] | None = None,
    service_host: str | None = None,
    allow_stage_replay: bool = False,
    rotate: bool = False,
) -> list[Provisioned]:
    """Declare everything as admin, then create or update each service's user and grants."""
    vhost = vhost_of(admin_url)
    await declare_as_admin(admin_url)
    grants, done = [], []
    for perms in all_services(allow_stage_replay=allow_stage_replay):
        user = f"{user_prefix}{perms.service}"
        path = credentials_file(credentials_dir, perms.service) if credentials_dir else None
        password = (given_passwords or {}).get(perms.service)
        if password is None and path is not None and not rotate:
            password = read_password(path)
        password = password or secrets.token_urlsafe(32)
        grants.append((user, password, perms))
        done.append(
            Provisioned(
                perms.service, user, service_url(admin_url, vhost, user, password, service_host), path
            )
        )
    users.load(definitions(vhost, grants))
    for item in done:
        if item.credentials is not None:
            write_credentials(item.credentials, item.url)
    return done
