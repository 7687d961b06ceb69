"""The command line of SPEC §5, through Flask's CLI runner on the test database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask.testing import FlaskCliRunner
from sqlalchemy import func, select

from app import queries
from app.extensions import db
from app.models import ConsentRecord, OutboxMessage, Profile, Resource, StatusEvent
from tests import factories
from tests.helpers import count


def test_resources_add_and_list(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["resources", "add", "weekly", "--name", "Weekly <b>news</b>"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        args=[
            "resources", "add", "brand", "--name", "Brand",
            "--single-opt-in", "--private", "--channels", "email,sms",
        ]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    brand = queries.resource_by_slug("brand")
    assert brand is not None
    assert (brand.public, brand.double_opt_in, brand.channels) == (False, False, "email,sms")

    listing = runner.invoke(args=["resources", "list"]).output.splitlines()
    assert listing == [
        "brand\tBrand\temail,sms\tprivate, single opt-in",
        "weekly\tWeekly <b>news</b>\temail\tpublic, double opt-in",
    ]


def test_resources_add_refuses_bad_input_and_changes_nothing(runner: FlaskCliRunner) -> None:
    runner.invoke(args=["resources", "add", "weekly", "--name", "Weekly"])
    for args, message in [
        (["weekly", "--name", "Again"], "exists already"),
        (["Not A Slug", "--name", "X"], "a slug is"),
        (["fax-news", "--name", "X", "--channels", "fax"], "unknown channel 'fax'"),
        (["empty", "--name", "   "], "a name is"),
    ]:
        result = runner.invoke(args=["resources", "add", *args])
        assert result.exit_code != 0
        assert message in result.output
    assert [r.slug for r in queries.all_resources()] == ["weekly"]


def test_demo_creates_the_demo_resource_once(runner: FlaskCliRunner) -> None:
    assert "created demo resource newsletter" in runner.invoke(args=["demo"]).output
    events = count(StatusEvent)
    assert "is there" in runner.invoke(args=["demo"]).output
    assert len(queries.all_resources()) == 1
    assert count(StatusEvent) == events


def test_demo_history_is_a_month_of_real_status_changes_and_sends_no_email(
    runner: FlaskCliRunner,
) -> None:
    result = runner.invoke(args=["demo"])
    assert result.exit_code == 0, result.output
    assert "demo history: 120 signups" in result.output
    profiles = db.session.scalars(select(Profile)).all()
    assert len(profiles) == 120
    assert all(p.email.endswith("@demo.example") for p in profiles)
    causes = set(db.session.scalars(select(StatusEvent.cause)))
    assert {"signup", "confirm", "unsubscribe_link", "bounce"} <= causes
    times = list(db.session.scalars(select(StatusEvent.occurred_at)))
    assert min(times) >= datetime.now(UTC) - timedelta(days=31)
    assert len({t.date() for t in times}) > 10  # spread over the month, not all today
    # Every confirmed subscription carries its proof of consent, as a real confirmation does.
    confirmations = db.session.scalar(
        select(func.count()).where(StatusEvent.cause == "confirm", StatusEvent.channel.is_not(None))
    )
    assert count(ConsentRecord) == confirmations > 0
    assert count(OutboxMessage) == 0
    # The statuses are what the rules made of that history: bounced addresses are suppressed.
    bounced = [p for p in profiles if p.status == "hardbounced"]
    assert bounced and all(queries.suppression_of(p.email_hash) for p in bounced)


def test_demo_without_history(runner: FlaskCliRunner) -> None:
    assert runner.invoke(args=["demo", "--people", "0"]).exit_code == 0
    assert count(Profile) == 0


def test_statuses_expire_reports_what_it_did(runner: FlaskCliRunner, newsletter: Resource) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=40)
    factories.signup("old@example.com", "newsletter", now=long_ago)
    factories.signup("kept@example.com", "newsletter", now=long_ago)
    factories.confirm("kept@example.com", "newsletter", now=long_ago)
    factories.pause("kept@example.com", None, long_ago + timedelta(days=14), now=long_ago)
    result = runner.invoke(args=["statuses", "expire"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == (
        "suspensions ended: 1, unconfirmed subscriptions deleted: 1, profiles deleted: 1"
    )
    assert queries.profile_by_email("old@example.com") is None
    kept = queries.profile_by_email("kept@example.com")
    assert kept is not None and kept.status == "subscribed"
