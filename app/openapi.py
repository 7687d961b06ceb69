"""The OpenAPI 3.1 document of the JSON API, served at /api/v1/openapi.json. The tests check the
real answers against these schemas and run schemathesis against it."""

from __future__ import annotations

from typing import Any

from app.changes import ChangeKind
from app.services.changes import CURSOR_PATTERN
from app.status import ALTCRAFT_STATUS_NUMBERS, Cause, Channel, Status

STATUS_WORDS = [status.value for status in Status]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, **_json(_ref("Error"))}


TIME = {"type": "string", "format": "date-time"}
# Any text: everything but the NUL character, which no database column of optin can hold.
TEXT = {"type": "string", "pattern": "^[^\\u0000]*$"}
EMAIL = {"type": "string", "format": "email", "maxLength": 254}
EMAIL_PARAM = {"name": "email", "in": "query", "required": True, "schema": EMAIL}
RESOURCE_PARAM = {
    "name": "resource",
    "in": "query",
    "required": False,
    "schema": TEXT,
}
CHANNEL_PARAM = {
    "name": "channel",
    "in": "query",
    "required": False,
    "schema": {"type": "string", "enum": [c.value for c in Channel], "default": "email"},
}
EMAIL_PATH = {"name": "email", "in": "path", "required": True, "schema": EMAIL}
SLUG_PATH = {"name": "slug", "in": "path", "required": True, "schema": TEXT}
STATUS_INPUT = {
    "description": "A status word, or Altcraft's number (0-6); `complained` means `complainer`.",
    "anyOf": [
        {"type": "string", "enum": [*STATUS_WORDS, "complained"]},
        {"type": "integer", "enum": sorted(ALTCRAFT_STATUS_NUMBERS)},
    ],
}
COMMON_ERRORS = {
    "400": _error("Malformed request; `error.field` names the field."),
    "401": _error("Missing, wrong or revoked API key."),
    "429": _error("More than API_RATE_LIMIT requests with this key; `Retry-After` says when."),
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": TEXT,
                    "message": TEXT,
                    "field": TEXT,
                },
            }
        },
    },
    "Eligibility": {
        "type": "object",
        "required": ["email", "allowed", "reason", "global_status", "subscription_status"],
        "properties": {
            "email": TEXT,
            "allowed": {"type": "boolean"},
            "reason": TEXT,
            "global_status": _nullable({"type": "string", "enum": STATUS_WORDS}),
            "subscription_status": _nullable({"type": "string", "enum": STATUS_WORDS}),
        },
    },
    "EligibilityBatch": {
        "type": "object",
        "required": ["emails"],
        "properties": {
            "emails": {
                "type": "array",
                "items": TEXT,
                "maxItems": 10000,
                "description": "Malformed addresses are answered `invalid_email`, not refused.",
            },
            "resource": _nullable(TEXT),
            "channel": {"type": "string", "enum": [c.value for c in Channel]},
        },
    },
    "EligibilityResults": {
        "type": "object",
        "required": ["results"],
        "properties": {"results": {"type": "array", "items": _ref("Eligibility")}},
    },
    "Links": {
        "type": "object",
        "required": [
            "unsubscribe_url",
            "preferences_url",
            "list_unsubscribe",
            "list_unsubscribe_post",
        ],
        "properties": {
            "unsubscribe_url": {"type": "string", "format": "uri"},
            "preferences_url": {"type": "string", "format": "uri"},
            "list_unsubscribe": TEXT,
            "list_unsubscribe_post": {"type": "string", "const": "List-Unsubscribe=One-Click"},
        },
    },
    "AudienceRow": {
        "allOf": [
            _ref("Links"),
            {
                "type": "object",
                "required": ["email", "name"],
                "properties": {"email": TEXT, "name": _nullable(TEXT)},
            },
        ]
    },
    "Profile": {
        "type": "object",
        "required": [
            "email",
            "name",
            "global_status",
            "suspended_until",
            "subscriptions",
            "events",
        ],
        "properties": {
            "email": TEXT,
            "name": _nullable(TEXT),
            "global_status": {"type": "string", "enum": STATUS_WORDS},
            "suspended_until": _nullable(TIME),
            "confirmation_sent": {"type": "boolean"},
            "subscriptions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["resource", "channel", "status", "created_at", "confirmed_at"],
                    "properties": {
                        "resource": TEXT,
                        "channel": TEXT,
                        "status": {"type": "string", "enum": STATUS_WORDS},
                        "suspended_until": _nullable(TIME),
                        "created_at": TIME,
                        "confirmed_at": _nullable(TIME),
                    },
                },
            },
            "events": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": [
                        "at",
                        "scope",
                        "channel",
                        "old_status",
                        "new_status",
                        "cause",
                        "actor",
                    ],
                    "properties": {
                        "at": TIME,
                        "scope": TEXT,
                        "channel": _nullable(TEXT),
                        "old_status": _nullable({"type": "string", "enum": STATUS_WORDS}),
                        "new_status": {"type": "string", "enum": STATUS_WORDS},
                        "cause": {"type": "string", "enum": [c.value for c in Cause]},
                        "actor": _nullable(TEXT),
                        "reason": _nullable(TEXT),
                    },
                },
            },
        },
    },
    "StatusChange": {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": STATUS_INPUT,
            "suspended_until": TIME,
            "reason": TEXT,
        },
    },
    "SubscriptionChange": {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": STATUS_INPUT,
            "channel": {"type": "string", "enum": [c.value for c in Channel]},
            "suspended_until": TIME,
            "reason": TEXT,
            "name": TEXT,
            "consent": {
                "type": "object",
                "description": "Proof of consent collected by the caller; without it, "
                "`subscribed` sends the confirmation email where the resource needs one.",
                "properties": {
                    "confirmed_at": TIME,
                    "ip": TEXT,
                    "user_agent": TEXT,
                    "form": TEXT,
                },
            },
        },
    },
    "Events": {
        "type": "object",
        "required": ["events"],
        "properties": {
            "events": {
                "type": "array",
                "maxItems": 10000,
                "items": {
                    "type": "object",
                    "required": ["type", "email", "event_id"],
                    "properties": {
                        "type": {
                            "type": "string",
                            "enum": ["hard_bounce", "soft_bounce", "complaint", "unsubscribe"],
                        },
                        "email": EMAIL,
                        "resource": _nullable(TEXT),
                        "channel": {"type": "string", "enum": [c.value for c in Channel]},
                        "occurred_at": TIME,
                        "event_id": {**TEXT, "minLength": 1, "maxLength": 200},
                    },
                },
            }
        },
    },
    "Change": {
        "description": "One change, as the change feed lists it and as an outgoing webhook "
        "carries it: a status change (`kind` status), or an erasure (`kind` erasure: no "
        "address, no statuses; forget the profile with this id). The events of a profile "
        "erased since have `email` and `profile` null.",
        "type": "object",
        "required": [
            "kind",
            "at",
            "profile",
            "email",
            "scope",
            "resource",
            "channel",
            "old_status",
            "new_status",
            "suspended_until",
            "cause",
            "actor",
        ],
        "properties": {
            "kind": {"type": "string", "enum": [kind.value for kind in ChangeKind]},
            "at": TIME,
            "profile": _nullable({"type": "integer"}),
            "email": _nullable(TEXT),
            "scope": _nullable(TEXT),
            "resource": _nullable(TEXT),
            "channel": _nullable(TEXT),
            "old_status": _nullable({"type": "string", "enum": STATUS_WORDS}),
            "new_status": _nullable({"type": "string", "enum": STATUS_WORDS}),
            "suspended_until": _nullable(TIME),
            "cause": {"type": "string", "enum": [*(c.value for c in Cause), "erasure"]},
            "actor": _nullable(TEXT),
        },
    },
    "ChangePage": {
        "type": "object",
        "required": ["changes", "next"],
        "properties": {
            "changes": {"type": "array", "items": _ref("Change"), "maxItems": 1000},
            "next": {
                "type": "string",
                "pattern": CURSOR_PATTERN,
                "description": "The cursor to ask with next (`after`); the same one when "
                "nothing was new. Opaque, and valid forever.",
            },
        },
    },
    "EventsReport": {
        "type": "object",
        "required": ["accepted", "duplicates"],
        "properties": {
            "accepted": {"type": "integer", "minimum": 0},
            "duplicates": {"type": "integer", "minimum": 0},
        },
    },
}


def _operation(
    summary: str,
    responses: dict[str, Any],
    *,
    parameters: list[dict[str, Any]] | None = None,
    body: str | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "parameters": parameters or [],
        "responses": {**responses, **COMMON_ERRORS},
    }
    if body:
        operation["requestBody"] = {"required": True, **_json(_ref(body))}
    return operation


PATHS: dict[str, Any] = {
    "/eligibility": {
        "get": _operation(
            "May we send to this address? No resource: the global status alone.",
            {
                "200": {"description": "The decision", **_json(_ref("Eligibility"))},
                "404": _error("Unknown resource"),
            },
            parameters=[EMAIL_PARAM, RESOURCE_PARAM, CHANNEL_PARAM],
        ),
        "post": _operation(
            "The decision for up to 10,000 addresses, in the order given.",
            {
                "200": {
                    "description": "One decision per address",
                    **_json(_ref("EligibilityResults")),
                },
                "404": _error("Unknown resource"),
                "413": _error("More than 10,000 addresses"),
            },
            body="EligibilityBatch",
        ),
    },
    "/resources/{slug}/audience": {
        "get": _operation(
            "Everyone who may be sent this resource, streamed with their links.",
            {
                "200": {
                    "description": "One row per recipient: NDJSON, or CSV with Accept: text/csv",
                    "content": {
                        "application/x-ndjson": {"schema": _ref("AudienceRow")},
                        "text/csv": {"schema": TEXT},
                    },
                },
                "404": _error("Unknown resource"),
            },
            parameters=[SLUG_PATH, CHANNEL_PARAM],
        )
    },
    "/links": {
        "get": _operation(
            "The links and List-Unsubscribe header values for one recipient.",
            {
                "200": {"description": "The links", **_json(_ref("Links"))},
                "404": _error("Unknown profile or resource"),
            },
            parameters=[EMAIL_PARAM, RESOURCE_PARAM, CHANNEL_PARAM],
        )
    },
    "/changes": {
        "get": _operation(
            "Every status change and erasure after a cursor, in the order they became final; "
            "no change is ever skipped, and a profile's changes come in the order they "
            "happened.",
            {"200": {"description": "A page of changes", **_json(_ref("ChangePage"))}},
            parameters=[
                {
                    "name": "after",
                    "in": "query",
                    "required": False,
                    "description": "A `next` this feed answered; none: from the beginning.",
                    "schema": {"type": "string", "pattern": CURSOR_PATTERN},
                },
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                },
            ],
        )
    },
    "/profiles/{email}": {
        "get": _operation(
            "A profile with its subscriptions and its event history.",
            {
                "200": {"description": "The profile", **_json(_ref("Profile"))},
                "404": _error("Unknown profile"),
            },
            parameters=[EMAIL_PATH],
        )
    },
    "/profiles/{email}/status": {
        "put": _operation(
            "Change the global status (suspended needs suspended_until).",
            {
                "200": {"description": "The profile after the change", **_json(_ref("Profile"))},
                "409": _error("The rules do not allow this change"),
            },
            parameters=[EMAIL_PATH],
            body="StatusChange",
        )
    },
    "/profiles/{email}/subscriptions/{slug}": {
        "put": _operation(
            "Create or change a subscription.",
            {
                "200": {"description": "The profile after the change", **_json(_ref("Profile"))},
                "202": {
                    "description": "A signup: the confirmation email is on its way",
                    **_json(_ref("Profile")),
                },
                "404": _error("Unknown resource"),
                "409": _error("The rules do not allow this change"),
            },
            parameters=[EMAIL_PATH, SLUG_PATH],
            body="SubscriptionChange",
        )
    },
    "/events": {
        "post": _operation(
            "Report delivery events; a repeated event_id changes nothing.",
            {
                "200": {"description": "What was applied", **_json(_ref("EventsReport"))},
                "404": _error("An event names an unknown resource; `error.field` says which"),
                "413": _error("More than 10,000 events"),
            },
            body="Events",
        )
    },
}


# Outgoing webhooks (issue 15): what optin POSTs to an endpoint, under OpenAPI 3.1's
# ``webhooks``. Its ``data`` is the change feed's ``Change``.
WEBHOOK_SCHEMAS: dict[str, Any] = {
    "WebhookTest": {
        "type": "object",
        "required": ["kind", "endpoint", "at"],
        "properties": {
            "kind": {"const": "test"},
            "endpoint": {"type": "integer"},
            "at": TIME,
        },
    },
    "WebhookPayload": {
        "description": "Signed per Standard Webhooks: headers `webhook-id` (the same on every "
        "try), `webhook-timestamp`, `webhook-signature` (`v1,` base64 HMAC-SHA256 of "
        "`id.timestamp.body` under the endpoint's `whsec_` secret).",
        "type": "object",
        "required": ["type", "timestamp", "data"],
        "properties": {
            "type": {"type": "string"},
            "timestamp": TIME,
            "data": {"anyOf": [_ref("Change"), _ref("WebhookTest")]},
        },
    },
}
WEBHOOKS: dict[str, Any] = {
    "change": {
        "post": {
            "summary": "A status change (`profile.<status>`, `subscription.<status>`), an "
            "erasure (`profile.erased`, no address) or `webhook.test`, POSTed to each endpoint "
            "that chose its type, in order per profile.",
            "requestBody": {"required": True, **_json(_ref("WebhookPayload"))},
            "responses": {
                "2XX": {"description": "Delivered"},
                "410": {"description": "The endpoint is gone: optin pauses it"},
                "default": {"description": "Tried again with backoff for over a day"},
            },
        }
    }
}


def openapi_document() -> dict[str, Any]:
    """The whole document, for the current server."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "optin API",
            "version": "1.0.0",
            "description": "Whom may the sending platform message, with which links; and what "
            "happened to what it sent. Authenticate with `Authorization: Bearer <api key>`.",
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "paths": PATHS,
        "webhooks": WEBHOOKS,
        "components": {
            "schemas": {**SCHEMAS, **WEBHOOK_SCHEMAS},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
