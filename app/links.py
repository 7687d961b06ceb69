"""The links every recipient gets: unsubscribe, preferences, and the two List-Unsubscribe header
values of RFC 2369 and RFC 8058. The emails, the API and the audience export all use these."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from flask import current_app

from app.tokens import LinkTarget, Purpose, make_token

ONE_CLICK = "List-Unsubscribe=One-Click"


@dataclass(frozen=True)
class Links:
    unsubscribe_url: str
    preferences_url: str
    list_unsubscribe: str
    list_unsubscribe_post: str


def absolute(path: str) -> str:
    """A URL on optin's public address (BASE_URL), usable in an email."""
    return current_app.config["BASE_URL"].rstrip("/") + path


def confirm_url(target: LinkTarget) -> str:
    return absolute(f"/confirm/{make_token(Purpose.CONFIRM, target)}")


def preferences_url(profile_id: int) -> str:
    return absolute(f"/preferences/{make_token(Purpose.PREFERENCES, LinkTarget(profile_id, None))}")


def links_for(profile_id: int, resource_id: int | None, channel: str = "email") -> Links:
    """The links for one recipient of a message about ``resource_id`` (None: a message sent to the
    whole database, whose unsubscribe link is global, SPEC §1 rule 2)."""
    token = make_token(Purpose.UNSUBSCRIBE, LinkTarget(profile_id, resource_id, channel))
    unsubscribe_url = absolute(f"/unsubscribe/{token}")
    mailto = current_app.config["UNSUBSCRIBE_MAILTO"]
    mailto_url = f"mailto:{mailto}?subject={quote('unsubscribe ' + token)}"
    return Links(
        unsubscribe_url=unsubscribe_url,
        preferences_url=preferences_url(profile_id),
        list_unsubscribe=f"<{unsubscribe_url}>, <{mailto_url}>",
        list_unsubscribe_post=ONE_CLICK,
    )
