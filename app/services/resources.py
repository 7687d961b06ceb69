"""Creating and listing resources: the things customers subscribe to."""

from __future__ import annotations

import re
from collections.abc import Iterable

from sqlalchemy.exc import IntegrityError

from app.database import write_transaction
from app.models import ConsentText, Resource
from app.services.errors import InvalidInput
from app.services.statuses import parse_channel

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
) -> Resource:
    """A new resource with the first version of its consent text."""
    slug = slug.strip().lower()
    if not SLUG_PATTERN.match(slug):
        raise InvalidInput(
            "a slug is 1 to 64 lower-case letters, digits and inner hyphens, like 'weekly-news'"
        )
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidInput("a name is 1 to 200 characters")
    parsed = list(dict.fromkeys(parse_channel(channel.strip()) for channel in channels))
    if not parsed:
        raise InvalidInput("a resource uses at least one channel")
    try:
        with write_transaction() as session:
            resource = Resource(
                slug=slug,
                name=name,
                description=description,
                channels=",".join(channel.value for channel in parsed),
                public=public,
                double_opt_in=double_opt_in,
            )
            session.add(resource)
            session.flush()
            session.add(
                ConsentText(
                    resource_id=resource.id, version=1, text=DEFAULT_CONSENT_TEXT.format(name=name)
                )
            )
    except IntegrityError:
        raise ResourceExists(slug) from None
    return resource
