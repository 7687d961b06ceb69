"""The command line of SPEC §5, through Flask's CLI runner on the test database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask.testing import FlaskCliRunner

from app import queries
from app.models import Resource
from app.services import statuses


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
    assert "is there" in runner.invoke(args=["demo"]).output
    assert len(queries.all_resources()) == 1


def test_statuses_expire_reports_what_it_did(runner: FlaskCliRunner, newsletter: Resource) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=40)
    statuses.signup("old@example.com", "newsletter", now=long_ago)
    statuses.signup("kept@example.com", "newsletter", now=long_ago)
    statuses.confirm("kept@example.com", "newsletter", now=long_ago)
    statuses.pause("kept@example.com", None, long_ago + timedelta(days=14), now=long_ago)
    result = runner.invoke(args=["statuses", "expire"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == (
        "suspensions ended: 1, unconfirmed subscriptions deleted: 1, profiles deleted: 1"
    )
    assert queries.profile_by_email("old@example.com") is None
    kept = queries.profile_by_email("kept@example.com")
    assert kept is not None and kept.status == "subscribed"
