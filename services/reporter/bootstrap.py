"""The one place that wires the reporter: settings, database, adapters and the three handler tables."""

from __future__ import annotations

import asyncio
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
from services.reporter.watchdog import Watchdog, deadlines
from shared.bus import Bus
from shared.bus import topology as t
from shared.bus.worker import Consumer, Worker
from shared.config import load_config
from shared.db import make_engine, make_sessions
from shared.events import CATALOGUE, BuildFinished, BuildRequested, Envelope


def bootstrap(
    settings: ReporterSettings,
    *,
    sessions: sessionmaker[Session] | None = None,
    mailer: Mailer | None = None,
    poster: CommitStatusPoster | None = None,
    publisher: CDEventPublisher | None = None,
) -> Worker:
    """The reporter's worker: the history, notify and cdevents queues. `parts`: `sessions`,
    `history` (the batching ingestor), `notifier` (for the report commands and tests)."""
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
    notify_handlers = {
        BuildRequested: partial(on_build_requested, notifier=notifier),
        BuildFinished: partial(on_build_finished, notifier=notifier),
    }

    def cdevents_handlers(bus: Bus) -> dict:
        handler = partial(
            on_event_for_cdevents,
            publisher=publisher or BusCDEventPublisher(bus),
            build_url=settings.build_url,
        )
        return dict.fromkeys(CATALOGUE, handler)

    watchdog = Watchdog(
        sessions,
        limits=deadlines(settings.watchdog_deadlines),
        interval_s=settings.watchdog_interval_s,
        queue_wait_s=settings.watchdog_queue_wait_s,
    )
    background: list[asyncio.Task[None]] = []

    def start_watchdog(bus: Bus) -> None:
        async def publish(
            event: BuildFinished, build_id: str, package: str, event_id: str, attempt: int
        ) -> None:
            envelope = Envelope.new(
                event, source="reporter", build_id=build_id, package=package, event_id=event_id
            )
            await bus.publish(envelope.model_copy(update={"attempt": attempt}))

        if settings.watchdog_interval_s > 0:
            background.append(asyncio.get_running_loop().create_task(watchdog.run(publish)))

    def stop_watchdog() -> None:
        for task in background:
            task.cancel()

    return Worker(
        source="reporter",
        settings=settings,
        consumers=[
            Consumer(t.REPORTER_HISTORY, dict.fromkeys(CATALOGUE, history.handle)),
            Consumer(t.REPORTER_NOTIFY, notify_handlers),
            Consumer(t.REPORTER_CDEVENTS, cdevents_handlers),
        ],
        on_start=[start_watchdog],
        on_stop=[stop_watchdog, history.close],
        health_port=settings.health_port,
        parts={"sessions": sessions, "history": history, "notifier": notifier, "watchdog": watchdog},
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
