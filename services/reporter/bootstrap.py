"""The one place that wires the reporter: settings, database, adapters and the three handler tables."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

from sqlalchemy.orm import Session, sessionmaker

from services.reporter.adapters.commit_status import HttpCommitStatusPoster
from services.reporter.adapters.smtp_mailer import SmtpMailer
from services.reporter.batching import BatchingIngestor
from services.reporter.handlers import (
    BusCDEventPublisher,
    on_build_finished,
    on_build_requested,
    on_event_for_cdevents,
)
from services.reporter.history_process import history_process, write_in_child
from services.reporter.history_writer import write_batch
from services.reporter.notify import Notifier
from services.reporter.ports import CDEventPublisher, CommitStatusPoster, Mailer
from services.reporter.settings import ReporterSettings
from shared.bus import Bus
from shared.bus import topology as t
from shared.config import load_config
from shared.db import make_engine, make_sessions
from shared.events import CATALOGUE, BuildFinished, BuildRequested, Envelope


@dataclass
class Reporter:
    settings: ReporterSettings
    sessions: sessionmaker[Session]
    history: BatchingIngestor
    notifier: Notifier
    publisher: CDEventPublisher | None = None
    consuming: list[str] = field(default_factory=list)

    def history_handlers(self) -> dict:
        return {model: self.history.handle for model in CATALOGUE}

    def notify_handlers(self) -> dict:
        return {
            BuildRequested: partial(on_build_requested, notifier=self.notifier),
            BuildFinished: partial(on_build_finished, notifier=self.notifier),
        }

    def cdevents_handlers(self, publisher: CDEventPublisher) -> dict:
        handler = partial(on_event_for_cdevents, publisher=publisher, build_url=self.settings.build_url)
        return {model: handler for model in CATALOGUE}

    async def start(self, bus: Bus) -> None:
        """Registered with `run_service`: consume the three reporter queues."""
        publisher = self.publisher or BusCDEventPublisher(bus)
        await bus.consume(t.REPORTER_HISTORY, self.history_handlers())
        await bus.consume(t.REPORTER_NOTIFY, self.notify_handlers())
        await bus.consume(t.REPORTER_CDEVENTS, self.cdevents_handlers(publisher))
        self.consuming = [t.REPORTER_HISTORY.name, t.REPORTER_NOTIFY.name, t.REPORTER_CDEVENTS.name]

    async def close(self) -> None:
        await self.history.close()


def bootstrap(
    settings: ReporterSettings,
    *,
    sessions: sessionmaker[Session] | None = None,
    mailer: Mailer | None = None,
    poster: CommitStatusPoster | None = None,
    publisher: CDEventPublisher | None = None,
) -> Reporter:
    sessions = sessions or make_sessions(make_engine(settings.database_url))

    def write(batch: list[Envelope]) -> int:
        with sessions() as session:
            return write_batch(session, batch)

    def recipients_for(notify: str, package: str) -> list[str]:
        """`raci` = the package's active RACI roles (config.yaml); otherwise addresses, comma-separated."""
        if notify.strip().lower() == "raci":
            if not settings.config_path:
                raise ValueError("--notify raci needs KILN_CONFIG_PATH (the pipeline config.yaml)")
            return load_config(settings.config_path).package(package).raci.active_emails()
        return [address.strip() for address in notify.split(",") if "@" in address]

    notifier = Notifier(
        sessions=sessions,
        mailer=mailer or _smtp_mailer(settings),
        poster=poster or _commit_status_poster(settings),
        recipients_for=recipients_for,
        build_url=settings.build_url,
        sender=settings.smtp_from,
        bitbucket_server_url=settings.bitbucket_server_url,
    )
    if settings.history_writer == "process":
        write, executor = write_in_child, history_process(settings.database_url)
    else:
        executor = None
    history = BatchingIngestor(
        write,
        max_batch=settings.history_batch_size,
        max_wait_ms=settings.history_batch_wait_ms,
        executor=executor,
    )
    return Reporter(
        settings=settings, sessions=sessions, history=history, notifier=notifier, publisher=publisher
    )


def _smtp_mailer(settings: ReporterSettings) -> SmtpMailer | None:
    if not settings.smtp_host:
        return None
    return SmtpMailer(
        settings.smtp_host,
        settings.smtp_port,
        username=settings.smtp_username,
        password=settings.smtp_password,
        starttls=settings.smtp_starttls,
        ca_file=settings.smtp_ca_file,
        timeout_s=settings.smtp_timeout_s,
        attempts=settings.smtp_attempts,
        retry_delay_s=settings.smtp_retry_delay_s,
    )


def _commit_status_poster(settings: ReporterSettings) -> HttpCommitStatusPoster:
    return HttpCommitStatusPoster(
        github_api_url=settings.github_api_url,
        github_token=settings.github_token,
        bitbucket_cloud_api_url=settings.bitbucket_cloud_api_url,
        bitbucket_cloud_token=settings.bitbucket_cloud_token,
        bitbucket_server_url=settings.bitbucket_server_url,
        bitbucket_server_token=settings.bitbucket_server_token,
        attempts=settings.commit_status_attempts,
    )
