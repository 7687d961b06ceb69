"""Creating, changing and listing resources: the things customers subscribe to."""

from __future__ import annotations

import re
from collections.abc import Iterable

from flask import current_app
from sqlalchemy.exc import IntegrityError

from app import queries
from app.database import transactional, write_transaction
from app.extensions import db
from app.models import ConsentText, Resource
from app.security import thank_you_url_problem
from app.services.errors import InvalidInput, NotFound
from app.services.statuses import parse_channel
from app.status import Channel

SLUG_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
DEFAULT_CONSENT_TEXT = (
    "Yes, send me {name}. I can unsubscribe at any time with the link in every message."
)


class ResourceExists(InvalidInput):
    def __init__(self, slug: str) -> None:
        super().__init__(f"a resource {slug!r} exists already")


def create_resource(
    slug: str,
    name: str,
    *,
    channels: Iterable[str] = ("email",),
    public: bool = True,
    double_opt_in: bool = True,
    description: str = "",
    thank_you_url: str | None = None,
    consent_text: str | None = None,
) -> Resource:
    """A new resource with the first version of its consent text (the default one unless
    ``consent_text`` is given)."""
    slug = slug.strip().lower()
    if not SLUG_PATTERN.match(slug):
        raise InvalidInput(
            "a slug is 1 to 64 lower-case letters, digits and inner hyphens, like 'weekly-news'"
        )
    name = _checked_name(name)
    parsed = _checked_channels(channels)
    thank_you_url = _checked_url(thank_you_url)
    first_text = (consent_text or "").strip() or DEFAULT_CONSENT_TEXT.format(name=name)
    try:
        with write_transaction() as session:
            resource = Resource(
                slug=slug,
                name=name,
                description=description,
                channels=",".join(channel.value for channel in parsed),
                public=public,
                double_opt_in=double_opt_in,
                thank_you_url=thank_you_url,
            )
            session.add(resource)
            session.flush()
            session.add(ConsentText(resource_id=resource.id, version=1, text=first_text))
    except IntegrityError:
        raise ResourceExists(slug) from None
    return resource


@transactional
def update_resource(
    resource_id: int,
    *,
    name: str,
    description: str,
    channels: Iterable[str],
    public: bool,
    double_opt_in: bool,
    thank_you_url: str | None,
    consent_text: str,
) -> Resource:
    """Change a resource (its slug stays: it is in every link already sent). A changed consent
    text becomes a new version, since each consent record names the version the customer saw;
    old versions are never edited."""
    name = _checked_name(name)
    parsed = _checked_channels(channels)
    thank_you_url = _checked_url(thank_you_url)
    text = consent_text.strip()
    if not text:
        raise InvalidInput("a consent text is needed")
    resource = queries.resource_by_id(resource_id)
    if resource is None:
        raise NotFound("no such resource")
    resource.name = name
    resource.description = description.strip()
    resource.channels = ",".join(channel.value for channel in parsed)
    resource.public = public
    resource.double_opt_in = double_opt_in
    resource.thank_you_url = thank_you_url
    current = queries.current_consent_text(resource.id)
    if current is None or current.text != text:
        version = current.version + 1 if current else 1
        db.session.add(ConsentText(resource_id=resource.id, version=version, text=text))
    return resource


def _checked_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidInput("a name is 1 to 200 characters")
    return name


def _checked_channels(channels: Iterable[str]) -> list[Channel]:
    parsed = list(dict.fromkeys(parse_channel(channel.strip()) for channel in channels))
    if not parsed:
        raise InvalidInput("a resource uses at least one channel")
    return parsed


def _checked_url(url: str | None) -> str | None:
    """A thank-you URL is an http(s) address on a host in TRUSTED_REDIRECT_HOSTS, or nothing.
    (It is checked again when a visitor is sent there: the setting may have changed since.)"""
    url = (url or "").strip()
    if not url:
        return None
    problem = thank_you_url_problem(url, current_app.config["TRUSTED_REDIRECT_HOSTS"])
    if problem:
        raise InvalidInput(problem)
    return url
