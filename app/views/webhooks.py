"""Provider webhooks at /webhooks/<provider> (SPEC §3): Amazon SES through SNS, SendGrid and
Postmark, each verified the way that provider signs its requests; and their inbound mail hooks
at /webhooks/<provider>/inbound (SPEC §5: mail to UNSUBSCRIBE_MAILTO unsubscribes). The check is
attached when the blueprint is registered (``register_webhooks``), before any view runs."""

from __future__ import annotations

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from werkzeug.exceptions import Forbidden, NotFound

from app.extensions import csrf
from app.services import events, inbound
from app.services.errors import InvalidInput
from app.services.errors import NotFound as NotFoundError
from app.services.providers import (
    BadPayload,
    InboundProvider,
    NotAuthentic,
    NotConfigured,
    Provider,
    Unavailable,
    WebhookRequest,
    inbound_registry,
    registry,
)
from app.services.statuses import Actor

webhooks = Blueprint("webhooks", __name__, url_prefix="/webhooks")

# Seconds a provider is asked to wait before it retries a delivery optin could not check yet.
RETRY_AFTER = 60


@webhooks.errorhandler(Unavailable)
def _unavailable(error: Unavailable) -> tuple[Response, int, dict[str, str]]:
    """A check that needs the network failed (SNS's certificate could not be fetched): a 503 on
    purpose, not a crash, because providers retry a 5xx and drop a 4xx, and the event must not
    be lost to a passing outage. Logged, since a lasting one needs the operator."""
    current_app.logger.error("webhook not checked, asking for a retry: %s", error)
    body = {
        "error": {"code": "unavailable", "message": "the request could not be checked now; retry"}
    }
    return jsonify(body), 503, {"Retry-After": str(RETRY_AFTER)}


def _incoming() -> WebhookRequest:
    return WebhookRequest(
        body=request.get_data(cache=True),
        headers=request.headers,
        authorization=request.authorization,
    )


def verify_provider() -> None:
    """Refuse anything the named provider did not sign (403), and providers that are off (404).
    An inbound hook is checked with its own check (SendGrid signs it with another key)."""
    name = (request.view_args or {}).get("provider", "")
    provider: Provider | InboundProvider | None
    if request.endpoint == "webhooks.receive_inbound":
        provider = inbound_registry().get(name)
        check = provider.verify_inbound if provider else None
    else:
        provider = registry().get(name)
        check = provider.verify if provider else None
    if check is None:
        raise NotFound()
    try:
        check(_incoming(), current_app.config)
    except NotConfigured:
        raise NotFound() from None
    except (NotAuthentic, BadPayload) as error:
        current_app.logger.warning("webhook refused: %s", error)
        raise Forbidden() from None
    g.provider = provider


@webhooks.post("/<provider>")
def receive(provider: str) -> tuple[Response, int]:
    """Apply the provider's bounce, complaint and unsubscribe events; answer what was new."""
    try:
        found = g.provider.events(_incoming(), current_app.config)
        report = events.record_events(
            found, source=provider, actor=Actor(name=f"webhook:{provider}")
        )
    except (BadPayload, InvalidInput, NotFoundError) as error:
        # Signed, but nothing optin can apply (a malformed address, an unknown resource): the
        # provider should not retry it, and nothing of the batch was applied.
        body = {"error": {"code": "bad_payload", "message": str(error)}}
        return jsonify(body), 400
    return jsonify({"accepted": report.accepted, "duplicates": report.duplicates}), 200


@webhooks.post("/<provider>/inbound")
def receive_inbound(provider: str) -> tuple[Response, int]:
    """Unsubscribe by the messages a provider received for UNSUBSCRIBE_MAILTO, as
    ``flask inbound`` does; answer how many did what. A message without a valid token is
    answered 200 as well: the provider must not retry it, and nothing goes back to its sender."""
    try:
        mails = g.provider.inbound(_incoming(), current_app.config)
    except BadPayload as error:
        body = {"error": {"code": "bad_payload", "message": str(error)}}
        return jsonify(body), 400
    return jsonify(inbound.unsubscribe_by_mails(mails)), 200


def keep_the_signed_body() -> None:
    """A signature covers the body as it was sent, and an app-wide hook that runs before the
    blueprint's (``errors.refuse_nul_bytes``) parses a form body, which uses up the stream:
    SendGrid's Inbound Parse posts multipart/form-data. Read the body into the request's cache
    first; werkzeug's form parser then reads from that cache."""
    if request.blueprint == webhooks.name:
        request.get_data(cache=True)


def register_webhooks(app: Flask) -> None:
    """Register the webhooks with their guard: provider signatures, no cookies or CSRF."""
    app.before_request_funcs.setdefault(None, []).insert(0, keep_the_signed_body)
    app.register_blueprint(webhooks)
    app.before_request_funcs.setdefault(webhooks.name, []).append(verify_provider)
    csrf.exempt(webhooks)
