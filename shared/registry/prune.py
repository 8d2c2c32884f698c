"""Prune a repository to its newest N builds, deleting manifests by digest.

Rule: build tags are `b<N>` (shared.naming.build_tag); the N highest numbers are kept, and so is
every other tag (`latest`, hand-made tags): prune only ever removes builds. A manifest is
deleted when no kept tag references it, directly or through a kept index; deleting an index
also deletes the images it listed unless something kept still needs them. Deleting by digest
removes every tag on that digest, which is why kept digests are computed first.

Deletion only unlinks manifests; the bytes stay until the registry's garbage collector runs
(offline for registry:2: `docker-registry garbage-collect --delete-untagged <config.yml>` with
the registry stopped or read-only; Harbor: `python -m shared.registry gc-harbor`).
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field
from typing import Protocol

from shared.registry import manifests as mf
from shared.registry.errors import NotFound


class PrunableRegistry(Protocol):
    """What a prune needs of a registry (RegistryClient is one). A protocol, not an import of
    shared.registry.client: the client calls this module, so the dependency goes one way."""

    def list_tags(self, repo: str) -> list[str]: ...
    def manifest_digest(self, repo: str, ref: str) -> str: ...
    def get_manifest(self, repo: str, ref: str) -> tuple[str, str, bytes]: ...
    def delete_manifest(self, repo: str, digest: str) -> None: ...


_BUILD_TAG = re.compile(r"^b([1-9][0-9]*)$")


@dataclass
class PruneReport:
    repository: str
    keep: int
    dry_run: bool
    kept_tags: list[str] = field(default_factory=list)
    # digest → the tags that pointed at it ([] for index children)
    deleted: dict[str, list[str]] = field(default_factory=dict)

    @property
    def deleted_tags(self) -> list[str]:
        return sorted((t for tags in self.deleted.values() for t in tags), key=_tag_order)

    def summary(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        return (
            f"{self.repository}: kept {len(self.kept_tags)} tag(s) {self.kept_tags}; "
            f"{verb} {len(self.deleted)} manifest(s), tags {self.deleted_tags}"
        )


def build_number(tag: str) -> int | None:
    match = _BUILD_TAG.match(tag)
    return int(match[1]) if match else None


def _tag_order(tag: str) -> tuple[int, str]:
    number = build_number(tag)
    return (-number if number is not None else 0, tag)


def select_kept_tags(tags: list[str], keep: int) -> list[str]:
    """Every non-build tag, plus the `keep` highest-numbered build tags."""
    if keep < 0:
        raise ValueError(f"keep must be >= 0, got {keep}")
    builds = sorted((t for t in tags if build_number(t) is not None), key=_tag_order)
    return sorted([t for t in tags if build_number(t) is None] + builds[:keep], key=_tag_order)


def prune(client: PrunableRegistry, repo: str, keep: int, dry_run: bool = False) -> PruneReport:
    tags = client.list_tags(repo)
    kept_tags = select_kept_tags(tags, keep)
    report = PruneReport(repository=repo, keep=keep, dry_run=dry_run, kept_tags=kept_tags)
    digest_of = {tag: client.manifest_digest(repo, tag) for tag in tags}
    children: dict[str, list[str]] = {}

    def referenced(digest: str) -> list[str]:
        if digest not in children:
            media_type, _, data = client.get_manifest(repo, digest)
            entries = json.loads(data).get("manifests", []) if media_type in mf.INDEXES else []
            children[digest] = [entry["digest"] for entry in entries]
        return children[digest]

    kept: set[str] = set()
    for tag in kept_tags:
        kept.add(digest_of[tag])
        kept.update(referenced(digest_of[tag]))
    for tag in sorted(set(tags) - set(kept_tags), key=_tag_order):
        digest = digest_of[tag]
        if digest in kept:
            continue
        report.deleted.setdefault(digest, []).append(tag)
        for child in referenced(digest):
            if child not in kept:
                report.deleted.setdefault(child, [])
    if not dry_run:
        for digest in report.deleted:  # Distribution does not enforce references: order is free
            with contextlib.suppress(NotFound):  # already gone (a concurrent prune): the goal holds
                client.delete_manifest(repo, digest)
    return report
