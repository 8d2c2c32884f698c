"""Bitbucket Cloud `repo:push` (header X-Event-Key).

Payload (support.atlassian.com, "Event payloads"): `push.changes[]` each with `new`/`old`
({type: branch|tag, name, target.hash}) and `created`/`closed`; `new: null` is a deletion.
The repository has no clone link, only `links.html.href`: the claimed clone URL is that plus `.git`.
"""

from __future__ import annotations

from typing import Any, Literal

from services.gateway.webhooks.changes import (
    Ignored,
    MalformedPayload,
    Push,
    RefChange,
    items,
    obj,
    text,
)

EVENT_HEADER = "X-Event-Key"
SIGNATURE_HEADER = "X-Hub-Signature"
DELIVERY_HEADER = "X-Request-UUID"
_KINDS: dict[str, Literal["branch", "tag"]] = {"branch": "branch", "named_branch": "branch", "tag": "tag"}


def parse(event: str, payload: Any) -> Push | Ignored:
    if event != "repo:push":
        return Ignored(f"event {event!r} starts no build")
    body = obj(payload, "body")
    repository = obj(body.get("repository"), "repository")
    full_name = text(repository.get("full_name"), "repository.full_name")
    links = repository.get("links") if isinstance(repository.get("links"), dict) else {}
    html = links.get("html") if isinstance(links.get("html"), dict) else {}
    href = html.get("href") if isinstance(html.get("href"), str) else ""
    actor_obj = body.get("actor") if isinstance(body.get("actor"), dict) else {}
    actor = actor_obj.get("nickname") or actor_obj.get("display_name") or ""
    if not isinstance(actor, str):
        raise MalformedPayload("actor.nickname must be a string")
    changes = items(obj(body.get("push"), "push").get("changes"), "push.changes")
    return Push(
        repository=full_name,
        clone_urls=(f"{href.rstrip('/')}.git",) if href else (),
        actor=actor,
        changes=tuple(_change(c, f"push.changes[{i}]") for i, c in enumerate(changes)),
    )


def _change(raw: Any, where: str) -> RefChange:
    change = obj(raw, where)
    new, old = change.get("new"), change.get("old")
    side = obj(new if new is not None else old, f"{where}.new/old")
    kind = _KINDS.get(side.get("type"))  # type: ignore[arg-type]
    if kind is None:
        raise MalformedPayload(f"{where} has unknown ref type {side.get('type')!r}")
    name = text(side.get("name"), f"{where}.name")
    if new is None or change.get("closed") is True:
        return RefChange(kind=kind, name=name, commit="", deleted=True)
    commit = text(obj(side.get("target"), f"{where}.new.target").get("hash"), f"{where}.new.target.hash")
    return RefChange(kind=kind, name=name, commit=commit, deleted=False)
