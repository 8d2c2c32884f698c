"""GitHub `push` and `ping` (header X-GitHub-Event). Payload: docs.github.com webhook-events#push."""

from __future__ import annotations

from typing import Any

from services.gateway.webhooks.changes import (
    Ignored,
    MalformedPayload,
    Push,
    RefChange,
    is_zero,
    obj,
    split_ref,
    text,
)

EVENT_HEADER = "X-GitHub-Event"
SIGNATURE_HEADER = "X-Hub-Signature-256"
DELIVERY_HEADER = "X-GitHub-Delivery"


def parse(event: str, payload: Any) -> Push | Ignored:
    if event == "ping":
        return Ignored("ping: hook is reachable")
    if event != "push":
        return Ignored(f"event {event!r} starts no build")
    body = obj(payload, "body")
    repository = obj(body.get("repository"), "repository")
    kind, name = split_ref(text(body.get("ref"), "ref"), "ref")
    deleted = body.get("deleted") is True
    after = text(body.get("after"), "after", required=False)
    head = body.get("head_commit")
    commit = text(obj(head, "head_commit").get("id"), "head_commit.id") if head else after
    if is_zero(commit):
        deleted, commit = True, ""
    pusher = body.get("pusher") if isinstance(body.get("pusher"), dict) else {}
    sender = body.get("sender") if isinstance(body.get("sender"), dict) else {}
    actor = pusher.get("name") or sender.get("login") or ""
    full_name = text(repository.get("full_name"), "repository.full_name")
    claimed = text(repository.get("clone_url"), "repository.clone_url", required=False)
    if not isinstance(actor, str):
        raise MalformedPayload("pusher.name must be a string")
    return Push(
        repository=full_name,
        clone_urls=(claimed,) if claimed else (),
        actor=actor,
        changes=(RefChange(kind=kind, name=name, commit="" if deleted else commit, deleted=deleted),),
    )
