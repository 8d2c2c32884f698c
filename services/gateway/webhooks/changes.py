"""What a push delivery means, independent of the provider that sent it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from shared.platforms import branch_of, is_branch_ref

ZERO_HASH = "0" * 40


class MalformedPayload(Exception):
    """The body is not what the event header announced: 400 with this message."""


@dataclass(frozen=True)
class RefChange:
    kind: Literal["branch", "tag"]
    name: str  # branch or tag name, without refs/heads/ or refs/tags/
    commit: str  # the new target hash; empty for a deletion
    deleted: bool

    @property
    def ref(self) -> str:
        return f"refs/{'heads' if self.kind == 'branch' else 'tags'}/{self.name}"


@dataclass(frozen=True)
class Push:
    repository: str  # "owner/name" (Bitbucket Server: "PROJECT/slug")
    # The clone URLs the payload claims, only compared with the configured source (routing.py):
    # a build never clones from them.
    clone_urls: tuple[str, ...]
    actor: str
    changes: tuple[RefChange, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Ignored:
    """An event that starts nothing (ping, an unhandled event key): 200 with the reason."""

    reason: str


def obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedPayload(f"{where} must be an object")
    return value


def text(value: Any, where: str, *, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise MalformedPayload(f"{where} must be a non-empty string")
    return value


def items(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise MalformedPayload(f"{where} must be a list")
    return value


def split_ref(ref: str, where: str) -> tuple[Literal["branch", "tag"], str]:
    if is_branch_ref(ref):
        return "branch", branch_of(ref)
    if ref.startswith("refs/tags/"):
        return "tag", ref.removeprefix("refs/tags/")
    raise MalformedPayload(f"{where} {ref!r} is neither refs/heads/* nor refs/tags/*")


def is_zero(commit: str) -> bool:
    return not commit or set(commit) == {"0"}
