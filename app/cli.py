"""Command line: ``flask --app app <group> <command>`` (SPEC §5)."""

from __future__ import annotations

import sys
import time

import click
from flask import Flask, current_app

from app import outbox, queries
from app.services import admin_users, api_keys
from app.services.demo import DEMO_DOMAIN, seed_history
from app.services.errors import InvalidInput, NotFound
from app.services.maintenance import expire
from app.services.resources import create_resource

resources_cli = click.Group("resources", help="Create and list resources.")
statuses_cli = click.Group("statuses", help="Status upkeep.")
outbox_cli = click.Group("outbox", help="The queue of emails to send.")
api_keys_cli = click.Group("api-keys", help="Keys for the JSON API.")
users_cli = click.Group("users", help="Admin users of the admin view.")


@resources_cli.command("add")
@click.argument("slug")
@click.option("--name", required=True, help="The name customers see.")
@click.option("--description", default="", help="One or two sentences for the signup page.")
@click.option("--single-opt-in", is_flag=True, help="Subscribe without a confirmation email.")
@click.option("--private", is_flag=True, help="Hide from the public pages.")
@click.option("--channels", default="email", show_default=True, help="Comma-separated.")
def add_resource(
    slug: str, name: str, description: str, single_opt_in: bool, private: bool, channels: str
) -> None:
    """Create a resource that customers can subscribe to."""
    try:
        resource = create_resource(
            slug,
            name,
            channels=channels.split(","),
            public=not private,
            double_opt_in=not single_opt_in,
            description=description,
        )
    except InvalidInput as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"created {resource.slug} ({resource.channels})")


@resources_cli.command("list")
def list_resources() -> None:
    """Every resource, one a line."""
    for resource in queries.all_resources():
        flags = [
            "public" if resource.public else "private",
            "double opt-in" if resource.double_opt_in else "single opt-in",
        ]
        click.echo(f"{resource.slug}\t{resource.name}\t{resource.channels}\t{', '.join(flags)}")


@statuses_cli.command("expire")
def expire_statuses() -> None:
    """End suspensions that have reached their end; delete old unconfirmed signups (rule 8)."""
    report = expire(current_app.config["UNCONFIRMED_RETENTION_DAYS"])
    click.echo(
        f"suspensions ended: {report.suspensions_ended}, "
        f"unconfirmed subscriptions deleted: {report.subscriptions_deleted}, "
        f"profiles deleted: {report.profiles_deleted}"
    )


@click.command("demo")
@click.option(
    "--people",
    default=120,
    show_default=True,
    help="Demo profiles with a month of history, made when the demo resource is created.",
)
def demo(people: int) -> None:
    """Create the demo resource (DEMO_RESOURCE) unless it exists, with a month of made-up
    history for the admin view: what `make run` starts with. No email is sent."""
    slug = current_app.config["DEMO_RESOURCE"]
    if queries.resource_by_slug(slug) is not None:
        click.echo(f"demo resource {slug} is there")
        return
    create_resource(
        slug,
        "The optin Newsletter",
        description="News about optin, once a month. Try signing up: the email is printed "
        "to the console and saved under instance/mail.",
    )
    click.echo(f"created demo resource {slug}")
    if people > 0:
        report = seed_history(slug, people=people)
        click.echo(
            f"demo history: {report.people} signups at @{DEMO_DOMAIN}, {report.confirmed} "
            f"confirmed, {report.unsubscribed} unsubscribed, {report.bounced} bounced, "
            f"{report.complained} complained, {report.paused} paused"
        )


@outbox_cli.command("work")
@click.option("--once", is_flag=True, help="Send what is due now, then stop.")
@click.option("--batch", default=100, show_default=True, help="Messages claimed at a time.")
@click.option("--idle", default=1.0, show_default=True, help="Seconds to wait when nothing is due.")
def work_outbox(once: bool, batch: int, idle: float) -> None:
    """Deliver queued emails, retrying failures with backoff. Run as many as you like."""
    while True:
        report = outbox.deliver_due(batch)
        if report.handled:
            click.echo(f"sent {report.sent}, failed {report.failed}, dropped {report.dropped}")
        if once:
            return
        if report.handled < batch:
            time.sleep(idle)


@api_keys_cli.command("create")
@click.argument("name")
def create_api_key(name: str) -> None:
    """Create a key and print it. It is shown this once; only its hash is kept."""
    try:
        _row, key = api_keys.create_key(name)
    except InvalidInput as error:
        raise click.ClickException(str(error)) from None
    click.echo(key)


@api_keys_cli.command("revoke")
@click.argument("name")
def revoke_api_key(name: str) -> None:
    """Revoke a key: requests with it get 401 from now on."""
    try:
        api_keys.revoke_key(name)
    except NotFound as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"revoked {name}")


@api_keys_cli.command("list")
def list_api_keys() -> None:
    """Every key: name, first characters, created, revoked."""
    for row in api_keys.all_keys():
        revoked = f"revoked {row.revoked_at:%Y-%m-%d}" if row.revoked_at else "active"
        click.echo(f"{row.name}\t{row.prefix}…\t{row.created_at:%Y-%m-%d}\t{revoked}")


@users_cli.command("create")
@click.argument("email")
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from standard input (for scripts)."
)
def create_user(email: str, password_stdin: bool) -> None:
    """Create an admin user; the password is prompted for (twice) unless --password-stdin."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user = admin_users.create_user(email, password)
    except InvalidInput as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"created admin user {user.email}")


def register_commands(app: Flask) -> None:
    """Attach the command groups to the app."""
    app.cli.add_command(resources_cli)
    app.cli.add_command(statuses_cli)
    app.cli.add_command(outbox_cli)
    app.cli.add_command(api_keys_cli)
    app.cli.add_command(users_cli)
    app.cli.add_command(demo)
