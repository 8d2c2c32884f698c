"""The reporter's settings (KILN_*), read once at start-up."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from shared.settings import KilnSettings


class ReporterSettings(KilnSettings):
    # History ingestion: a batch closes at this many events or this long after its first one.
    history_batch_size: int = Field(100, ge=1, le=1000)
    history_batch_wait_ms: int = Field(100, ge=1, le=10_000)
    # "process": write in a child process (uses a second core; the default); "thread": in-process.
    history_writer: Literal["process", "thread"] = "process"

    # The gateway's page of a build: in emails, commit statuses and CDEvents.
    build_url_template: str = "http://127.0.0.1:8000/builds/{build_id}"

    # Email (STARTTLS + auth). No smtp_host: reports are recorded as not sent, never silently lost.
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = True
    smtp_ca_file: str | None = Field(None, description="CA bundle to verify the SMTP server's certificate")
    smtp_from: str = "Kiln <kiln@localhost>"
    smtp_timeout_s: float = 15.0
    smtp_attempts: int = Field(3, ge=1, le=10)
    smtp_retry_delay_s: float = 2.0

    # Commit statuses. A provider without a token is skipped (logged once per build).
    github_api_url: str = "https://api.github.com"
    github_token: SecretStr | None = None
    bitbucket_cloud_api_url: str = "https://api.bitbucket.org"
    bitbucket_cloud_token: SecretStr | None = None
    bitbucket_server_url: str | None = None
    bitbucket_server_token: SecretStr | None = None
    commit_status_attempts: int = Field(3, ge=1, le=10)

    # The watchdog (services/reporter/watchdog.py): every this many seconds, end each open build
    # whose current stage has been silent past its deadline (0 turns it off). Deadlines per
    # stage in seconds, as JSON ({"image": 2400}); a stage not named keeps its spec's deadline_s.
    watchdog_interval_s: float = Field(30.0, ge=0)
    watchdog_deadlines: dict[str, int] = Field(default_factory=dict)
    # How long a build may wait for its next stage to start (a queue wait, not a stalled run).
    watchdog_queue_wait_s: int = Field(3600, ge=1)

    def build_url(self, build_id: str) -> str:
        return self.build_url_template.format(build_id=build_id)
