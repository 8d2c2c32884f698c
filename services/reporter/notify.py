"""Telling people and source hosts: the email report and commit statuses, each attempt recorded.

A failure here never changes the build's status: the adapter retries a bounded number of times,
then the failure is logged and recorded in `reporter_notification` (status `failed`), and the
handler returns. A `sent` row makes a redelivered event a no-op, so nobody gets a report twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.dialects.mysql import insert
from sqlalchemy.orm import Session, sessionmaker

from services.reporter.adapters.commit_status import NoToken
from services.reporter.email_report import report_message
from services.reporter.models import NotificationAttempt
from services.reporter.ports import CommitState, CommitStatus, CommitStatusPoster, Mailer
from shared.bus import TransientError
from shared.db.models import EventLog
from shared.events import Envelope
from shared.history import build_detail
from shared.report import report_view

log = logging.getLogger("kiln.reporter.notify")

PROVIDERS = ("github", "bitbucket-cloud", "bitbucket-server")
FINAL_STATES: dict[str, CommitState] = {"succeeded": "successful", "failed": "failed", "cancelled": "failed"}


class Notifier:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        mailer: Mailer | None,
        poster: CommitStatusPoster,
        recipients_for: Callable[[str, str], list[str]],
        build_url: Callable[[str], str],
        sender: str,
        bitbucket_server_url: str | None = None,
    ):
        self._sessions = sessions
        self._mailer = mailer
        self._poster = poster
        self._recipients_for = recipients_for
        self._build_url = build_url
        self._sender = sender
        self._server_host = urlsplit(bitbucket_server_url or "").hostname

    # -- entry points (called by the handlers) --------------------------------------------------

    def build_started(self, envelope: Envelope, repo_url: str, commit: str, trigger_kind: str) -> None:
        self._commit_status(envelope, repo_url, commit, trigger_kind, "in_progress", "build in progress")

    def build_finished(self, envelope: Envelope) -> None:
        detail = self._detail_once_recorded(envelope)
        build = detail["build"]
        state = FINAL_STATES[build["status"]]
        # A rollback run redeploys an old commit's build: its result is no verdict on that commit.
        kind = build.get("trigger_kind") or ""
        if kind != "rollback":
            self._commit_status(envelope, build.get("repo_url") or "", build.get("commit_sha") or "",
                                kind, state, f"build {build['status']}")  # fmt: skip
        notify = (build.get("options") or {}).get("notify")
        if notify:
            self._email(envelope, detail, notify)

    # -- email ------------------------------------------------------------------------------------

    def _email(self, envelope: Envelope, detail: dict[str, Any], notify: str) -> None:
        build = detail["build"]
        try:
            recipients = self._recipients_for(notify, build["package"])
        except Exception as exc:  # no config, unknown package: recorded, the build is not affected
            self._record(envelope, "email", notify, "failed", f"no recipients: {exc}")
            log.error("report of build %s not sent: no recipients for %r: %s", build["build_id"], notify, exc)
            return
        target = ",".join(recipients)[:255]
        if not recipients or self._already_sent(envelope, "email", target):
            return
        if self._mailer is None:
            self._record(envelope, "email", target, "failed", "KILN_SMTP_HOST is not set")
            log.error("report of build %s not sent: KILN_SMTP_HOST is not set", build["build_id"])
            return
        view = report_view(detail, build_url=self._build_url(build["build_id"]))
        message = report_message(view, sender=self._sender, recipients=recipients)
        self._attempt(envelope, "email", target, lambda: self._mailer.send(message))

    # -- commit status ------------------------------------------------------------------------------

    def _commit_status(self, envelope: Envelope, repo_url: str, commit: str, trigger_kind: str,
                       state: CommitState, description: str) -> None:  # fmt: skip
        provider = self._provider(trigger_kind, repo_url)
        if provider is None or not commit:
            return
        status = CommitStatus(
            provider=provider,
            repository=repository_path(repo_url),
            commit=commit,
            state=state,
            key=f"kiln-{envelope.package or 'build'}"[:40],
            name=f"Kiln {envelope.package}".strip(),
            url=self._build_url(envelope.buildid),
            description=description,
        )
        target = f"{provider}:{commit}:{state}"
        if not self._already_sent(envelope, "commit-status", target):
            self._attempt(envelope, "commit-status", target, lambda: self._poster.post(status))

    def _provider(self, trigger_kind: str, repo_url: str) -> Any:
        if trigger_kind in PROVIDERS:
            return trigger_kind
        host = urlsplit(repo_url if "://" in repo_url else f"ssh://{repo_url.replace(':', '/', 1)}").hostname
        if host == "github.com":
            return "github"
        if host == "bitbucket.org":
            return "bitbucket-cloud"
        if host and host == self._server_host:
            return "bitbucket-server"
        return None

    # -- bookkeeping -----------------------------------------------------------------------------

    def _attempt(self, envelope: Envelope, channel: str, target: str, send: Callable[[], None]) -> None:
        try:
            send()
        except NoToken as exc:
            self._record(envelope, channel, target, "skipped", str(exc))
            log.info("%s for build %s skipped: %s", channel, envelope.buildid, exc)
            return
        except Exception as exc:
            self._record(envelope, channel, target, "failed", f"{type(exc).__name__}: {exc}")
            log.error("%s for build %s failed after retries: %s", channel, envelope.buildid, exc)
            return
        self._record(envelope, channel, target, "sent", None)

    def _already_sent(self, envelope: Envelope, channel: str, target: str) -> bool:
        with self._sessions() as session:
            status = session.scalar(
                select(NotificationAttempt.status).where(
                    NotificationAttempt.event_id == envelope.id,
                    NotificationAttempt.channel == channel,
                    NotificationAttempt.target == target,
                )
            )
        return status == "sent"

    def _record(self, envelope: Envelope, channel: str, target: str, status: str, error: str | None) -> None:
        now = datetime.now(UTC).replace(tzinfo=None)
        stmt = insert(NotificationAttempt).values(
            event_id=envelope.id, build_id=envelope.buildid, channel=channel, target=target[:255],
            status=status, attempts=1, error=error, updated_at=now,
        )  # fmt: skip
        stmt = stmt.on_duplicate_key_update(
            status=stmt.inserted.status,
            attempts=NotificationAttempt.attempts + 1,
            error=stmt.inserted.error,
            updated_at=stmt.inserted.updated_at,
        )
        with self._sessions() as session:
            session.execute(stmt)
            session.commit()

    def _detail_once_recorded(self, envelope: Envelope) -> dict[str, Any]:
        """The history queue is separate: wait (via the bus's retries) until it stored this event."""
        with self._sessions() as session:
            stored = session.scalar(select(EventLog.id).where(EventLog.event_id == envelope.id))
            detail = build_detail(session, envelope.buildid) if stored else None
        if detail is None:
            raise TransientError(f"history has not recorded {envelope.type} {envelope.id} yet")
        return detail


def repository_path(repo_url: str) -> str:
    """`https://github.com/o/r.git`, `git@github.com:o/r.git` -> `o/r`."""
    path = repo_url.split("://", 1)[-1]
    path = path.split(":", 1)[1] if "://" not in repo_url and ":" in path else path.split("/", 1)[-1]
    return "/".join(path.removesuffix(".git").strip("/").split("/")[-2:])
