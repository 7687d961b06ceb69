"""The links every recipient gets: unsubscribe, preferences, and the two List-Unsubscribe header
values of RFC 2369 and RFC 8058. The emails, the API and the audience export all use these. Each
names the profile by its id and its link key (tokens.py), so it opens nothing once the profile
is gone, whoever gets its id later."""

from __future__ import annotations

import json
from dataclasses import dataclass

from flask import current_app

from app.tokens import LinkSigner, LinkTarget, Purpose, make_token

ONE_CLICK = "List-Unsubscribe=One-Click"


@dataclass(frozen=True)
class Links:
    unsubscribe_url: str
    preferences_url: str
    list_unsubscribe: str
    list_unsubscribe_post: str


def absolute(path: str) -> str:
    """A URL on optin's public address (BASE_URL), usable in an email."""
    base: str = current_app.config["BASE_URL"]
    return base.rstrip("/") + path


def confirm_url(target: LinkTarget) -> str:
    return absolute(f"/confirm/{make_token(Purpose.CONFIRM, target)}")


def preferences_url(profile_id: int, key: str) -> str:
    return LinkMaker().preferences_url(profile_id, key)


def data_url(profile_id: int, key: str) -> str:
    """The short-lived "download or erase my data" link; only ever put into an email to the
    address itself (SPEC §2: proof that the person holds the mailbox now)."""
    return absolute(f"/data/{make_token(Purpose.DATA, LinkTarget(profile_id, key))}")


class LinkMaker:
    """Builds recipients' links with the settings and signers read once: the audience export
    makes them for every row."""

    def __init__(self) -> None:
        config = current_app.config
        self._base = config["BASE_URL"].rstrip("/")
        self._mailto = config["UNSUBSCRIBE_MAILTO"]
        self._unsubscribe = LinkSigner(Purpose.UNSUBSCRIBE)
        self._preferences = LinkSigner(Purpose.PREFERENCES)
        # For json_fields: the settings JSON-escaped once. Tokens need no escaping (letters,
        # digits, "-", "_" and "."), so each row is a plain string join.
        self._json_base = json.dumps(self._base)[1:-1]
        self._json_mailto = json.dumps(self._mailto)[1:-1]

    def preferences_url(self, profile_id: int, key: str) -> str:
        return f"{self._base}/preferences/{self._preferences.token(profile_id, key, None)}"

    def links(
        self, profile_id: int, key: str, resource_id: int | None, channel: str = "email"
    ) -> Links:
        """The links of the profile ``profile_id`` whose link key is ``key``."""
        token = self._unsubscribe.token(profile_id, key, resource_id, channel)
        unsubscribe_url = f"{self._base}/unsubscribe/{token}"
        # The token is URL-safe already: letters, digits, "-", "_" and ".".
        mailto_url = f"mailto:{self._mailto}?subject=unsubscribe%20{token}"
        return Links(
            unsubscribe_url=unsubscribe_url,
            preferences_url=self.preferences_url(profile_id, key),
            list_unsubscribe=f"<{unsubscribe_url}>, <{mailto_url}>",
            list_unsubscribe_post=ONE_CLICK,
        )

    def json_fields(
        self, profile_id: int, key: str, resource_id: int | None, channel: str = "email"
    ) -> str:
        """The four link fields of ``links`` as JSON object members, in the same order and bytes
        as ``json.dumps(vars(links(...)), separators=(",", ":"))`` writes them (a property test
        holds it to that), at half the cost: the audience export writes one per recipient."""
        token = self._unsubscribe.token(profile_id, key, resource_id, channel)
        preferences = self._preferences.token(profile_id, key, None)
        unsubscribe_url = f"{self._json_base}/unsubscribe/{token}"
        return (
            f'"unsubscribe_url":"{unsubscribe_url}",'
            f'"preferences_url":"{self._json_base}/preferences/{preferences}",'
            f'"list_unsubscribe":"<{unsubscribe_url}>, '
            f'<mailto:{self._json_mailto}?subject=unsubscribe%20{token}>",'
            f'"list_unsubscribe_post":"{ONE_CLICK}"'
        )


def links_for(profile_id: int, key: str, resource_id: int | None, channel: str = "email") -> Links:
    """The links for one recipient of a message about ``resource_id`` (None: a message sent to the
    whole database, whose unsubscribe link is global, SPEC §1 rule 2)."""
    return LinkMaker().links(profile_id, key, resource_id, channel)
