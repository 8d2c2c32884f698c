"""SMTP with STARTTLS and auth (smtplib), with bounded retries: a mail server that is down
costs a few attempts, then the failure is raised for the caller to record."""

from __future__ import annotations

import logging
import smtplib
import ssl
import time
from email.message import EmailMessage

from pydantic import SecretStr

log = logging.getLogger("kiln.reporter.mail")


class SmtpMailer:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        username: str | None = None,
        password: SecretStr | None = None,
        starttls: bool = True,
        ca_file: str | None = None,
        timeout_s: float = 15.0,
        attempts: int = 3,
        retry_delay_s: float = 2.0,
    ):
        self.host, self.port = host, port
        self._username, self._password = username, password
        self._starttls, self._ca_file = starttls, ca_file
        self._timeout_s = timeout_s
        self.attempts, self._retry_delay_s = attempts, retry_delay_s

    def send(self, message: EmailMessage) -> None:
        for attempt in range(1, self.attempts + 1):
            try:
                self._send_once(message)
                return
            except (OSError, smtplib.SMTPException) as exc:
                if attempt == self.attempts or isinstance(exc, smtplib.SMTPAuthenticationError):
                    raise
                log.warning("SMTP %s:%d failed (%s); attempt %d/%d", self.host, self.port,
                            exc, attempt + 1, self.attempts)  # fmt: skip
                time.sleep(self._retry_delay_s * attempt)

    def _send_once(self, message: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self._timeout_s) as smtp:
            smtp.ehlo()
            if self._starttls:
                smtp.starttls(context=ssl.create_default_context(cafile=self._ca_file))
                smtp.ehlo()
            if self._username and self._password is not None:
                smtp.login(self._username, self._password.get_secret_value())
            smtp.send_message(message)
