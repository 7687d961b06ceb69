"""The process's copy of the resources and consent texts (app/queries/catalogue.py): a signup form
needs no query for them, an edit shows at once in the process that made it, and within
CATALOGUE_CACHE_SECONDS in the others."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, select, update

from app.extensions import db
from app.models import ConsentRecord, ConsentText, Resource
from app.services.resources import update_resource
from tests.helpers import ALICE, link_to, run_worker, submit
from tests.smtp import SmtpServer


@contextmanager
def statements() -> Iterator[list[str]]:
    """The SQL statements run while the block runs."""
    seen: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", note)


def edit(resource: Resource, **changes: object) -> None:
    """The admin's edit of a resource, with everything it does not change kept as it is."""
    fields: dict[str, object] = {
        "name": resource.name,
        "description": resource.description,
        "channels": resource.channels.split(","),
        "public": resource.public,
        "double_opt_in": resource.double_opt_in,
        "thank_you_url": resource.thank_you_url,
        "consent_text": "Yes, send me The Newsletter.",
    }
    update_resource(resource.id, **(fields | changes))  # type: ignore[arg-type]


def test_a_signup_form_is_rendered_without_a_query(
    client: FlaskClient, newsletter: Resource
) -> None:
    assert client.get("/subscribe/newsletter").status_code == 200
    with statements() as seen:
        page = client.get("/subscribe/newsletter")
    assert page.status_code == 200 and "The Newsletter" in page.text
    assert seen == []


def test_an_edit_shows_at_once_in_the_process_that_made_it(
    client: FlaskClient, newsletter: Resource
) -> None:
    assert "The Newsletter" in client.get("/subscribe/newsletter").text
    edit(newsletter, name="The Weekly", consent_text="Yes, the weekly, please.")
    page = client.get("/subscribe/newsletter").text
    assert "The Weekly" in page and "Yes, the weekly, please." in page
    edit(newsletter, public=False)
    assert client.get("/subscribe/newsletter").status_code == 404
    assert client.get("/subscribe/newsletter").status_code == 404


def test_the_consent_record_names_the_version_the_form_showed_after_an_edit(
    app: Flask, client: FlaskClient, newsletter: Resource, smtp_server: SmtpServer
) -> None:
    client.get("/subscribe/newsletter")
    edit(newsletter, consent_text="Yes, the second wording.")
    assert "Yes, the second wording." in client.get("/subscribe/newsletter").text
    submit(client, "/subscribe/newsletter", {"email": ALICE})
    run_worker()
    (email,) = smtp_server.messages
    assert submit(client, link_to(email, "/confirm/"), {}).status_code == 200
    record = db.session.scalars(select(ConsentRecord)).one()
    shown = db.session.get(ConsentText, record.consent_text_id)
    assert shown is not None
    assert (shown.version, shown.text) == (2, "Yes, the second wording.")


def test_an_edit_made_by_another_process_shows_within_the_cache_time(
    app: Flask, client: FlaskClient, newsletter: Resource
) -> None:
    app.config["CATALOGUE_CACHE_SECONDS"] = 0.3
    assert "The Newsletter" in client.get("/subscribe/newsletter").text
    # Another process's commit: this one sees no event of it.
    db.session.execute(update(Resource).values(name="Renamed elsewhere"))
    db.session.commit()
    assert "The Newsletter" in client.get("/subscribe/newsletter").text
    time.sleep(0.35)
    assert "Renamed elsewhere" in client.get("/subscribe/newsletter").text
