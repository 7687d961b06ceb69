"""A real SMTP server for the tests: aiosmtpd on 127.0.0.1, keeping every message it receives."""

from __future__ import annotations

import email
import email.policy
import socket
from email.message import EmailMessage, Message

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Message as MessageHandler


class Inbox(MessageHandler):
    """Collects parsed messages, in the order the server received them."""

    def __init__(self) -> None:
        super().__init__(message_class=EmailMessage)
        self.messages: list[EmailMessage] = []

    def handle_message(self, message: Message) -> None:
        # Re-parse with the modern policy so tests can use get_body() and friendly headers.
        self.messages.append(
            email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
        )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class SmtpServer:
    """Start and stop an SMTP server on a free loopback port."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.inbox = Inbox()
        self._controller: Controller | None = None

    def start(self) -> SmtpServer:
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def messages(self) -> list[EmailMessage]:
        return self.inbox.messages
