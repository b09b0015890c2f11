"""Sending one email over SMTP, and sorting SMTP failures into "retry later" and "give up".

An unreachable server, a timeout or a 4xx reply may pass (RFC 5321 §4.2.1: transient), so it
raises `RetryableJobError`; a 5xx reply is a permanent rejection and raises `PermanentJobError`.
Error messages name the SMTP reply code only: the server's text may carry internal hostnames
or the recipient, and the message ends up on the job that callers read. Nothing here logs the
recipient or the body.
"""

from __future__ import annotations

import re
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import aiosmtplib
import structlog
from pydantic import SecretStr

from shared.errors import PermanentJobError, RetryableJobError
from shared.settings import Settings
from worker.circuit import circuit_breaker

log = structlog.get_logger("jobgate.mail")

SMTP_CIRCUIT = circuit_breaker("smtp", failure_threshold=5, window_seconds=60, recovery_seconds=30)
"""Guards the SMTP server: refusals (5xx, `PermanentJobError`) show it is up, so only the
retryable failures (unreachable, timeouts, 4xx) count."""

_ENHANCED_STATUS = re.compile(r"^\s*([245]\.\d{1,3}\.\d{1,3})\b")


class Mailer:
    """Delivers messages to the configured SMTP server, one connection per message.

    It keeps only the SMTP settings, not the `Settings` (which hold the database URL): a job
    function gets a mailer, not the keys to everything else.
    """

    def __init__(self, settings: Settings) -> None:
        self._sender = settings.email_from
        self._smtp: dict[str, Any] = {
            "hostname": settings.smtp_host,
            "port": settings.smtp_port,
            "username": _reveal(settings.smtp_username),
            "password": _reveal(settings.smtp_password),
            "use_tls": settings.smtp_use_tls,
            "start_tls": settings.smtp_starttls,
            "timeout": settings.smtp_timeout_seconds,
        }

    async def send(self, *, to: str, subject: str, body: str) -> str:
        """Send a plain-text message to `to`; returns its `Message-ID`."""
        message = self._compose(to=to, subject=subject, body=body)
        try:
            await aiosmtplib.send(message, sender=self._sender, recipients=[to], **self._smtp)
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise _job_error(exc) from None
        return str(message["Message-ID"])

    def _compose(self, *, to: str, subject: str, body: str) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self._sender
        message["To"] = to
        message["Subject"] = subject
        message["Date"] = formatdate(usegmt=True)
        # An explicit domain: make_msgid's default asks DNS for this host's FQDN, which can hang.
        message["Message-ID"] = make_msgid(domain=self._sender.rpartition("@")[2] or "localhost")
        message.set_content(body)
        return message


def _reveal(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None


def _job_error(exc: Exception) -> RetryableJobError | PermanentJobError:
    """The job error an SMTP failure amounts to (logged by class and code, never by text)."""
    code, detail = _reply(exc)
    log.warning("smtp.failed", error=type(exc).__name__, smtp_code=code)
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        message = f"the SMTP server refused the recipient{detail}"
    elif isinstance(exc, aiosmtplib.SMTPResponseException):
        message = f"the SMTP server rejected the message{detail}"
    elif isinstance(exc, aiosmtplib.SMTPNotSupported):
        # e.g. STARTTLS configured but not offered, or an address needing SMTPUTF8.
        return PermanentJobError("the SMTP server does not support what this message needs")
    elif isinstance(exc, TimeoutError):
        return RetryableJobError("the SMTP server did not answer in time")
    else:
        return RetryableJobError("could not reach the SMTP server")
    if code is not None and 500 <= code < 600:
        return PermanentJobError(message)
    return RetryableJobError(message)


def _reply(exc: Exception) -> tuple[int | None, str]:
    """The SMTP reply code of a refusal and a ` (550 5.1.1)` style detail for messages."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        # Every recipient was refused (we send to one); a transient refusal wins a retry.
        exc = min(exc.recipients, key=lambda refused: refused.code)
    if not isinstance(exc, aiosmtplib.SMTPResponseException) or exc.code < 0:
        return None, ""
    enhanced = _ENHANCED_STATUS.match(exc.message)
    suffix = f" {enhanced.group(1)}" if enhanced else ""
    return exc.code, f" ({exc.code}{suffix})"
