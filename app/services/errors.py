"""Errors a service raises for a request it understood but cannot carry out. Views map each to a
form error, a 4xx page or a JSON error; none of them leaves a change behind."""

from __future__ import annotations

from app.addresses import InvalidEmail
from app.status import RuleError, TransitionRefused, UnknownStatus

__all__ = [
    "InvalidEmail",
    "InvalidInput",
    "NotFound",
    "RuleError",
    "TransitionRefused",
    "UnknownChannel",
    "UnknownProfile",
    "UnknownResource",
    "UnknownStatus",
]


class InvalidInput(ValueError):
    """A value that is malformed on its face (a bad slug, a channel that does not exist)."""


class NotFound(LookupError):
    """The thing named does not exist."""


class UnknownResource(NotFound):
    def __init__(self, slug: str, field: str = "resource") -> None:
        super().__init__(f"no resource {slug!r}")
        self.slug = slug
        self.field = field


class UnknownProfile(NotFound):
    def __init__(self, email: str) -> None:
        super().__init__("no profile with this address")
        self.email = email


class UnknownChannel(InvalidInput):
    def __init__(self, channel: str, slug: str | None = None) -> None:
        where = f" for resource {slug!r}" if slug else ""
        super().__init__(f"unknown channel {channel!r}{where}")
        self.channel = channel
