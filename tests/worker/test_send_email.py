"""`send_email` end to end: gateway → `email` queue worker → a real local SMTP server (aiosmtpd)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.settings import Settings
from tests.conftest import WorkerFactory
from tests.factories import auth, make_tenant, submit, wait_for_status
from tests.gateway.problem_checks import error_locations
from tests.polling import poll_job

SENDER = "reports@jobgate.example"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Mailbox:
    """An aiosmtpd handler keeping what it receives; `refusal` set: every recipient is refused."""

    received: list[Envelope] = field(default_factory=list)
    refusal: str | None = None

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.refusal is not None:
            return self.refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received.append(envelope)
        return "250 Message accepted for delivery"

    def only_message(self) -> tuple[Envelope, EmailMessage]:
        """The one envelope received and its parsed message."""
        assert len(self.received) == 1, self.received
        envelope = self.received[0]
        assert isinstance(envelope.content, bytes)
        return envelope, message_from_bytes(envelope.content, policy=policy.default)


@pytest.fixture
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    """A local SMTP server on a free port: (its mailbox, its port)."""
    mailbox = Mailbox()
    port = _free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, server_hostname="mx.test")
    controller.start()
    try:
        yield mailbox, port
    finally:
        controller.stop()


def _smtp_settings(settings: Settings, port: int) -> Settings:
    return settings.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": port,
            "smtp_timeout_seconds": 5.0,
            "email_from": SENDER,
        }
    )


async def _email_worker(start_worker: WorkerFactory, settings: Settings, port: int) -> None:
    await start_worker(queue="email", settings=_smtp_settings(settings, port))


ARGS: dict[str, Any] = {
    "to": "Alice@Example.com",
    "subject": "Quarterly numbers — ready",
    "body": "Hello Alice,\n\nThe report is attached in spirit.\n",
}


async def test_delivers_the_message_and_returns_its_message_id(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    start_worker: WorkerFactory,
    settings: Settings,
    smtp_server: tuple[Mailbox, int],
) -> None:
    mailbox, port = smtp_server
    await _email_worker(start_worker, settings, port)
    _, token = await make_tenant(sessionmaker)
    job = await submit(client, token, "send_email", ARGS)
    assert job["max_tries"] == 3
    done = await wait_for_status(client, token, job["id"], "succeeded", "failed")
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 1

    envelope, message = mailbox.only_message()
    assert envelope.mail_from == SENDER
    assert envelope.rcpt_tos == ["Alice@example.com"]  # the domain part is normalised
    assert message["From"] == SENDER
    assert message["To"] == "Alice@example.com"
    assert message["Subject"] == ARGS["subject"]
    assert message["Message-ID"] == done["result"]["message_id"]
    assert done["result"]["message_id"].endswith("@jobgate.example>")
    assert message["Date"]
    assert message.get_content().replace("\r\n", "\n") == ARGS["body"]  # CRLF on the wire


async def test_unreachable_server_is_retried(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    start_worker: WorkerFactory,
    settings: Settings,
) -> None:
    await _email_worker(start_worker, settings, _free_port())  # nothing listens there
    _, token = await make_tenant(sessionmaker)
    job = await submit(client, token, "send_email", ARGS)
    retrying = await poll_job(client, token, job["id"], lambda j: j["status"] == "retrying")
    assert retrying["attempts"] == 1
    assert retrying["error"] == {
        "type": "RetryableJobError",
        "message": "could not reach the SMTP server",
    }
    assert retrying["scheduled_at"] and retrying["finished_at"] is None


async def test_unreachable_server_fails_once_tries_run_out(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    start_worker: WorkerFactory,
    settings: Settings,
) -> None:
    await _email_worker(start_worker, settings, _free_port())
    _, token = await make_tenant(sessionmaker)
    job = await submit(client, token, "send_email", ARGS, {"max_tries": 1})
    done = await wait_for_status(client, token, job["id"], "succeeded", "failed")
    assert done["status"] == "failed"
    assert done["error"]["type"] == "RetryableJobError"
    assert "127.0.0.1" not in done["error"]["message"]  # no server address reaches callers


async def test_permanent_recipient_rejection_fails_at_once(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    start_worker: WorkerFactory,
    settings: Settings,
    smtp_server: tuple[Mailbox, int],
) -> None:
    mailbox, port = smtp_server
    mailbox.refusal = "550 5.1.1 <alice@example.com>: mailbox unavailable"
    await _email_worker(start_worker, settings, port)
    _, token = await make_tenant(sessionmaker)
    job = await submit(client, token, "send_email", ARGS)
    done = await wait_for_status(client, token, job["id"], "succeeded", "failed")
    assert done["status"] == "failed"
    assert done["attempts"] == 1
    assert done["error"] == {
        "type": "permanent",
        "message": "the SMTP server refused the recipient (550 5.1.1)",
    }
    assert mailbox.received == []


async def test_transient_recipient_rejection_is_retried(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    start_worker: WorkerFactory,
    settings: Settings,
    smtp_server: tuple[Mailbox, int],
) -> None:
    mailbox, port = smtp_server
    mailbox.refusal = "450 4.2.1 mailbox busy, try later"
    await _email_worker(start_worker, settings, port)
    _, token = await make_tenant(sessionmaker)
    job = await submit(client, token, "send_email", ARGS)
    retrying = await poll_job(client, token, job["id"], lambda j: j["status"] == "retrying")
    assert retrying["error"] == {
        "type": "RetryableJobError",
        "message": "the SMTP server refused the recipient (450 4.2.1)",
    }


@pytest.mark.parametrize(
    ("args", "loc"),
    [
        ({**ARGS, "to": "not-an-address"}, ["body", "args", "to"]),
        ({**ARGS, "to": "alice@example.com\r\nBcc: eve@example.com"}, ["body", "args", "to"]),
        ({**ARGS, "subject": "hi\r\nBcc: eve@example.com"}, ["body", "args", "subject"]),
        ({**ARGS, "subject": "s" * 999}, ["body", "args", "subject"]),
        ({**ARGS, "body": "b" * 100_001}, ["body", "args", "body"]),
        ({"to": "alice@example.com", "subject": "no body"}, ["body", "args", "body"]),
    ],
)
async def test_invalid_args_are_422(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    args: dict[str, Any],
    loc: list[str],
) -> None:
    _, token = await make_tenant(sessionmaker)
    response = await client.post("/jobs/send_email", json={"args": args}, headers=auth(token))
    assert error_locations(response) == [loc]
    listed = await client.get("/jobs", headers=auth(token))
    assert listed.json()["items"] == []
