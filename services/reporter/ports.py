"""The reporter's narrow ports: where it sends mail, commit statuses and CDEvents."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Literal, Protocol

CommitState = Literal["in_progress", "successful", "failed"]


class Mailer(Protocol):
    def send(self, message: EmailMessage) -> None:
        """Deliver or raise; the adapter owns its bounded retries."""


@dataclass(frozen=True)
class CommitStatus:
    provider: Literal["github", "bitbucket-cloud", "bitbucket-server"]
    repository: str  # owner/repo or workspace/repo (unused by Bitbucket Server)
    commit: str
    state: CommitState
    key: str
    name: str
    url: str
    description: str


class CommitStatusPoster(Protocol):
    def post(self, status: CommitStatus) -> None:
        """Set the status or raise; skips quietly only when the provider has no token configured."""


class CDEventPublisher(Protocol):
    async def publish(self, routing_key: str, cdevent: dict[str, Any]) -> None: ...
