"""Mail providers' webhooks: how each one signs its requests, and how its events map onto the
generic delivery events of services/events.py.

Each provider module offers ``verify(request_data, config)``, which raises ``NotAuthentic`` for a
forged, replayed or unsigned request, and ``events(request_data, config)``, which returns the
generic events (and does any handshake the provider asks for). ``Provider`` says so to the type
checker, and ``registry`` holds the modules as Providers, so a module that lacks one of the two
or takes other arguments fails ``make lint`` instead of a provider's request.

The providers that receive mail for a domain (Postmark inbound, SendGrid Inbound Parse, SES
receiving through SNS) also offer ``verify_inbound`` and ``inbound``, which returns the messages
of an inbound hook's request for services/inbound.py (the mailto of List-Unsubscribe);
``InboundProvider`` and ``inbound_registry`` hold them to that in the same way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from werkzeug.datastructures import Authorization, Headers

if TYPE_CHECKING:
    # Only for the annotations: events.py imports the services that import this package.
    from app.services.events import IncomingEvent
    from app.services.inbound import InboundMail


class NotAuthentic(Exception):
    """The request cannot be shown to come from the provider."""


class NotConfigured(Exception):
    """This provider's webhook has no key or credentials set, so it is off."""


class BadPayload(ValueError):
    """Signed, but not in the provider's documented format."""


class Unavailable(Exception):
    """Something the check needs from elsewhere (SNS's signing certificate) could not be had
    now. Answered with a 503, which the provider retries, so no event is lost."""


def load_json(body: bytes | str) -> Any:
    """The JSON document in ``body``, or BadPayload. Nesting deep enough to exhaust the parser's
    recursion is as malformed as a syntax error, not a crash."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise BadPayload("the body is not JSON") from None


@dataclass(frozen=True)
class WebhookRequest:
    """What a provider module needs of an HTTP request."""

    body: bytes
    # werkzeug's Headers in a request (not a Mapping, and its names are case-insensitive).
    headers: Headers | Mapping[str, str]
    authorization: Authorization | None = None  # the parsed Authorization header, for basic auth


def parse_time(value: object) -> datetime:
    """A provider's ISO 8601 time (``Z`` allowed); when it has none, now."""
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return datetime.now(UTC)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class Provider(Protocol):
    """What a provider module offers (a module satisfies a Protocol by its functions)."""

    def verify(self, data: WebhookRequest, config: Mapping[str, Any]) -> None:
        """Raise NotAuthentic (or NotConfigured, BadPayload, Unavailable) unless the provider
        signed this request."""

    def events(self, data: WebhookRequest, config: Mapping[str, Any]) -> list[IncomingEvent]:
        """The generic events in this verified request."""


class InboundProvider(Protocol):
    """What a provider module with an inbound mail hook offers as well."""

    def verify_inbound(self, data: WebhookRequest, config: Mapping[str, Any]) -> None:
        """Raise as ``verify`` does unless the provider signed this inbound hook's request."""

    def inbound(self, data: WebhookRequest, config: Mapping[str, Any]) -> list[InboundMail]:
        """The received messages in this verified request."""


def registry() -> dict[str, Provider]:
    from app.services.providers import postmark, sendgrid, ses

    return {"ses": ses, "sendgrid": sendgrid, "postmark": postmark}


def inbound_registry() -> dict[str, InboundProvider]:
    from app.services.providers import postmark, sendgrid, ses

    return {"ses": ses, "sendgrid": sendgrid, "postmark": postmark}
