"""Bitbucket Server / Data Center `repo:refs_changed` and `diagnostics:ping` (header X-Event-Key).

Payload (confluence.atlassian.com, "Event payload"): `changes[]` each with `ref` {id, displayId,
type BRANCH|TAG}, `refId`, `fromHash`, `toHash`, `type` ADD|UPDATE|DELETE; a deletion has an
all-zero `toHash`. The repository is `{slug, project: {key}}`, usually without clone links (the
clone URL is KILN_BITBUCKET_SERVER_URL/scm/<project>/<slug>.git, or the package's clone_url).
"""

from __future__ import annotations

from typing import Any

from services.gateway.webhooks.changes import (
    Ignored,
    MalformedPayload,
    Push,
    RefChange,
    is_zero,
    items,
    obj,
    split_ref,
    text,
)

EVENT_HEADER = "X-Event-Key"
SIGNATURE_HEADER = "X-Hub-Signature"
DELIVERY_HEADER = "X-Request-Id"


def parse(event: str, payload: Any) -> Push | Ignored:
    if event == "diagnostics:ping":
        return Ignored("ping: hook is reachable")
    if event != "repo:refs_changed":
        return Ignored(f"event {event!r} starts no build")
    body = obj(payload, "body")
    repository = obj(body.get("repository"), "repository")
    slug = text(repository.get("slug"), "repository.slug")
    project = text(obj(repository.get("project"), "repository.project").get("key"), "repository.project.key")
    actor_obj = body.get("actor") if isinstance(body.get("actor"), dict) else {}
    actor = actor_obj.get("name") or ""
    if not isinstance(actor, str):
        raise MalformedPayload("actor.name must be a string")
    changes = items(body.get("changes"), "changes")
    return Push(
        repository=f"{project}/{slug}",
        clone_urls=_clone_urls(repository),
        actor=actor,
        changes=tuple(_change(c, f"changes[{i}]") for i, c in enumerate(changes)),
    )


def _clone_urls(repository: dict[str, Any]) -> tuple[str, ...]:
    links = repository.get("links") if isinstance(repository.get("links"), dict) else {}
    clone = links.get("clone") if isinstance(links.get("clone"), list) else []
    return tuple(
        link["href"]
        for link in clone
        if isinstance(link, dict)
        and isinstance(link.get("href"), str)
        and link.get("name") in ("http", "https")
    )


def _change(raw: Any, where: str) -> RefChange:
    change = obj(raw, where)
    ref_id = change.get("refId")
    if ref_id is None and isinstance(change.get("ref"), dict):
        ref_id = change["ref"].get("id")
    kind, name = split_ref(text(ref_id, f"{where}.refId"), f"{where}.refId")
    to_hash = text(change.get("toHash"), f"{where}.toHash", required=False)
    deleted = change.get("type") == "DELETE" or is_zero(to_hash)
    return RefChange(kind=kind, name=name, commit="" if deleted else to_hash, deleted=deleted)
