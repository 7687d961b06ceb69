"""``flask --app app inbound``: the mail receiver behind the mailto of ``List-Unsubscribe``.

An SMTP server (to be an MX) or an LMTP one (a local MTA's transport) on aiosmtpd, which takes
mail for ``UNSUBSCRIBE_MAILTO`` only and hands each message to ``services.inbound``. Its answers
are chosen for what a sending mail server does with them:

- any other recipient: ``550 5.1.1`` at RCPT, so nothing else is ever accepted;
- a message over ``INBOUND_MAX_BYTES``: ``552`` (announced with SIZE, so a client can know
  before it sends);
- the database unreachable, or anything else that went wrong: ``451 4.3.0``, a temporary failure,
  so the sender keeps the message and tries again. ``250`` is answered only after the unsubscribe
  is committed: an accepted message is never lost;
- a message read to its end: ``250``, whether it unsubscribed or held no valid token. A mail
  client shows a bounce, if at all, as a cryptic message days later, and a bounce for a forged
  token would tell its maker which tokens are real; the log says what each message did.

Nothing is ever sent back (no auto-reply, no bounce of optin's own).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import FrameType

from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session
from flask import Flask

from app.database import unreachable
from app.services.inbound import MailOutcome, mail_of_message, unsubscribe_by_mail

log = logging.getLogger(__name__)

PROTOCOLS = ("smtp", "lmtp")
# Messages applied at once; each is one short transaction.
THREADS = 4


def same_mailbox(address: str, mailbox: str) -> bool:
    """Whether an envelope recipient is the unsubscribe address. Without case: domains have none,
    and no one hands out two local parts that differ only in case."""
    return address.strip().casefold() == mailbox.strip().casefold()


class UnsubscribeMailbox:
    """The aiosmtpd handler: recipients at RCPT, the unsubscribe after DATA."""

    def __init__(self, app: Flask, pool: ThreadPoolExecutor, echo: Callable[[str], None]) -> None:
        self.app = app
        self.mailbox: str = app.config["UNSUBSCRIBE_MAILTO"]
        self.pool = pool
        self.echo = echo

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if not same_mailbox(address, self.mailbox):
            return "550 5.1.1 No such mailbox here"
        # The one mailbox named twice is one recipient: LMTP answers DATA once per recipient.
        if not any(same_mailbox(known, self.mailbox) for known in envelope.rcpt_tos):
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        loop = asyncio.get_running_loop()
        try:
            outcome = await loop.run_in_executor(self.pool, self._apply, raw, envelope.mail_from)
        except Exception as error:  # the sender must retry, whatever it was
            if unreachable(error):
                log.warning("database unreachable, message deferred (451): %s", error)
            else:
                log.exception("message deferred (451) after an unexpected error")
            return "451 4.3.0 Temporary failure, please try again later"
        peer = session.peer[0] if isinstance(session.peer, tuple) else session.peer
        self.echo(f"unsubscribe mail from {peer}: {outcome.value}")
        return "250 2.0.0 OK"

    def _apply(self, raw: bytes, envelope_sender: str | None) -> MailOutcome:
        with self.app.app_context():
            return unsubscribe_by_mail(mail_of_message(raw, envelope_sender or None))


class InboundServer(Controller):
    """The receiver on its own thread (aiosmtpd's Controller): the tests start it in process,
    ``flask inbound`` in the foreground (``serve_until_stopped``)."""

    def __init__(
        self,
        app: Flask,
        *,
        host: str | None = None,
        port: int | None = None,
        protocol: str | None = None,
        max_bytes: int | None = None,
        echo: Callable[[str], None] = log.info,
    ) -> None:
        """``echo`` reports each message's outcome (``flask inbound`` prints it, one line a
        message, as the outbox worker prints its rounds)."""
        config = app.config
        self.protocol = (protocol or config["INBOUND_PROTOCOL"]).lower()
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"INBOUND_PROTOCOL is smtp or lmtp, not {self.protocol!r}")
        self.pool = ThreadPoolExecutor(THREADS, thread_name_prefix="inbound")
        super().__init__(
            UnsubscribeMailbox(app, self.pool, echo),
            hostname=host or config["INBOUND_HOST"],
            port=port if port is not None else config["INBOUND_PORT"],
            data_size_limit=max_bytes or config["INBOUND_MAX_BYTES"],
            ident="optin inbound",
        )

    def factory(self) -> SMTP:
        server_class = LMTP if self.protocol == "lmtp" else SMTP
        return server_class(self.handler, **self.SMTP_kwargs)

    def stop(self, no_assert: bool = False) -> None:
        """Stop listening, then let the messages being applied commit (their senders, who got
        no answer, send them again: an unsubscribe twice changes nothing)."""
        super().stop(no_assert=no_assert)
        self.pool.shutdown(wait=True)


def serve_until_stopped(server: InboundServer) -> None:
    """Run ``server`` until SIGTERM or SIGINT (honcho, systemd, Ctrl-C)."""
    server.start()  # first: a port that is taken fails here, before any handler is changed
    stopping = threading.Event()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.warning(
        "inbound %s listening on %s:%s for %s",
        server.protocol.upper(),
        server.hostname,
        server.port,
        server.handler.mailbox,
    )
    while not stopping.wait(1):
        pass
    server.stop()
