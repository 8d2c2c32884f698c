"""Webhook payloads as Bitbucket Cloud, Bitbucket Server/DC and GitHub document them, built in code
(no recorded deliveries, no secrets), plus the pipeline config the gateway tests route with."""

from __future__ import annotations

import copy
import json
import secrets
from pathlib import Path
from typing import Any

import yaml

from services.gateway.webhooks.signature import sign
from shared.config import KilnConfig, parse_config

EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "operator" / "config.yaml"
ZERO = "0" * 40


def commit_hash() -> str:
    return secrets.token_hex(20)


def gateway_config() -> KilnConfig:
    """The example config (demo hosted on GitHub) plus a tag-building package (any provider), the
    same repository on Bitbucket Cloud and a Bitbucket Server repository."""
    raw = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    demo = raw["packages"]["demo"]
    tagged = copy.deepcopy(demo)
    tagged["webhooks"] = {"repository": "example/monorepo", "branches": ["release/*"], "tags": True}
    cloud = copy.deepcopy(demo)
    cloud["webhooks"] = {"repository": "example/monorepo", "provider": "bitbucket-cloud"}
    server = copy.deepcopy(demo)
    server["webhooks"] = {"repository": "PROJ/monorepo", "branches": ["*"], "tags": False}
    demo["webhooks"] = {**demo["webhooks"], "provider": "github"}
    raw["packages"].update({"demo-tags": tagged, "demo-cloud": cloud, "demo-server": server})
    return parse_config(
        yaml.safe_dump(raw), {}, source_name=str(EXAMPLE_CONFIG), source_dir=EXAMPLE_CONFIG.parent
    )


# -- Bitbucket Cloud repo:push -------------------------------------------------------------------


def cloud_change(branch: str | None, commit: str | None, *, kind: str = "branch", old: str | None = None):
    def side(name: str, sha: str) -> dict[str, Any]:
        return {
            "type": kind,
            "name": name,
            "target": {"type": "commit", "hash": sha, "message": "change", "author": {"raw": "Dev"}},
            "links": {"html": {"href": f"https://bitbucket.org/example/monorepo/branch/{name}"}},
        }

    deleted = commit is None
    return {
        "new": None if deleted else side(branch or "", commit),
        "old": side(branch or "", old or commit_hash()) if (old or deleted) else None,
        "created": old is None and not deleted,
        "closed": deleted,
        "forced": False,
        "truncated": False,
        "commits": [] if deleted else [{"hash": commit, "type": "commit"}],
    }


def cloud_push(*changes: dict[str, Any], full_name: str = "example/monorepo") -> dict[str, Any]:
    return {
        "actor": {"type": "user", "display_name": "Dev Eloper", "nickname": "dev", "uuid": "{a-b}"},
        "repository": {
            "type": "repository",
            "name": full_name.split("/")[-1],
            "full_name": full_name,
            "uuid": "{1234}",
            "scm": "git",
            "is_private": True,
            "links": {"html": {"href": f"https://bitbucket.org/{full_name}"}},
        },
        "push": {"changes": list(changes)},
    }


# -- Bitbucket Server / Data Center repo:refs_changed -----------------------------------------------


def server_change(ref: str, to_hash: str, *, change_type: str = "UPDATE") -> dict[str, Any]:
    kind = "TAG" if ref.startswith("refs/tags/") else "BRANCH"
    return {
        "ref": {"id": ref, "displayId": ref.split("/", 2)[-1], "type": kind},
        "refId": ref,
        "fromHash": commit_hash() if change_type != "ADD" else ZERO,
        "toHash": to_hash,
        "type": change_type,
    }


def server_push(*changes: dict[str, Any], project: str = "PROJ", slug: str = "monorepo") -> dict[str, Any]:
    return {
        "eventKey": "repo:refs_changed",
        "date": "2026-11-21T09:45:32+0000",
        "actor": {"name": "admin", "emailAddress": "admin@example.com", "id": 1, "slug": "admin"},
        "repository": {
            "slug": slug,
            "id": 84,
            "name": slug,
            "scmId": "git",
            "state": "AVAILABLE",
            "project": {"key": project, "id": 84, "name": "Project", "public": False, "type": "NORMAL"},
            "public": False,
        },
        "changes": list(changes),
    }


def server_ping() -> dict[str, Any]:
    return {"test": True}


# -- GitHub push -------------------------------------------------------------------------------------


def github_push(ref: str, after: str | None, *, full_name: str = "example/monorepo") -> dict[str, Any]:
    deleted = after is None
    return {
        "ref": ref,
        "before": commit_hash(),
        "after": ZERO if deleted else after,
        "created": False,
        "deleted": deleted,
        "forced": False,
        "base_ref": None,
        "compare": f"https://github.com/{full_name}/compare/a...b",
        "commits": [] if deleted else [{"id": after, "message": "change", "distinct": True}],
        "head_commit": None if deleted else {"id": after, "message": "change", "tree_id": commit_hash()},
        "repository": {
            "id": 1296269,
            "name": full_name.split("/")[-1],
            "full_name": full_name,
            "private": False,
            "html_url": f"https://github.com/{full_name}",
            "clone_url": f"https://github.com/{full_name}.git",
            "ssh_url": f"git@github.com:{full_name}.git",
            "default_branch": "main",
        },
        "pusher": {"name": "octocat", "email": "octocat@example.com"},
        "sender": {"login": "octocat", "id": 1, "type": "User"},
    }


def github_ping() -> dict[str, Any]:
    return {"zen": "Keep it logically awesome.", "hook_id": 1, "hook": {"type": "Repository", "active": True}}


# -- delivery headers -----------------------------------------------------------------------------------


def delivery(provider: str, event: str, payload: Any, secret: str | None, delivery_id: str | None = None):
    """(body bytes, headers) exactly as the provider would send them."""
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    signature = sign(secret, body) if secret else None
    if provider == "github":
        headers |= {"X-GitHub-Event": event, "User-Agent": "GitHub-Hookshot/abc"}
        if delivery_id:
            headers["X-GitHub-Delivery"] = delivery_id
        if signature:
            headers["X-Hub-Signature-256"] = signature
    else:
        headers |= {"X-Event-Key": event}
        if delivery_id:
            headers["X-Request-UUID" if provider == "bitbucket-cloud" else "X-Request-Id"] = delivery_id
        if signature:
            headers["X-Hub-Signature"] = signature
    return body, headers


def test_payload_builders_round_trip_through_json():
    for payload in (
        cloud_push(cloud_change("main", commit_hash())),
        server_push(server_change("refs/heads/main", commit_hash())),
        github_push("refs/heads/main", commit_hash()),
    ):
        assert json.loads(json.dumps(payload)) == payload
    assert "demo-tags" in gateway_config().packages
