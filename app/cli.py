"""Command line: ``flask --app app <group> <command>`` (SPEC §5)."""

from __future__ import annotations

import os
import sys

import click
from flask import Flask, current_app

from app import queries, worker
from app.database import utcnow
from app.services import admin_users, api_keys, exports, imports
from app.services.demo import DEMO_DOMAIN, seed_history
from app.services.errors import InvalidInput, NotFound
from app.services.maintenance import expire
from app.services.resources import create_resource
from app.services.statuses import parse_channel, resource_for
from app.services.upkeep import UpkeepRun, run_forever, run_once
from app.services.webhooks import endpoints as webhook_endpoints

resources_cli = click.Group("resources", help="Create and list resources.")
statuses_cli = click.Group("statuses", help="Status upkeep.")
outbox_cli = click.Group("outbox", help="The queue of emails to send.")
api_keys_cli = click.Group("api-keys", help="Keys for the JSON API.")
users_cli = click.Group("users", help="Admin users of the admin view.")
webhooks_cli = click.Group("webhooks", help="Endpoints that receive every change, signed.")


@resources_cli.command("add")
@click.argument("slug")
@click.option("--name", required=True, help="The name customers see.")
@click.option("--description", default="", help="One or two sentences for the signup page.")
@click.option("--single-opt-in", is_flag=True, help="Subscribe without a confirmation email.")
@click.option("--private", is_flag=True, help="Hide from the public pages.")
@click.option("--channels", default="email", show_default=True, help="Comma-separated.")
@click.option(
    "--thank-you-url",
    default=None,
    help="Where a signup goes next (a TRUSTED_REDIRECT_HOSTS host).",
)
def add_resource(
    slug: str,
    name: str,
    description: str,
    single_opt_in: bool,
    private: bool,
    channels: str,
    thank_you_url: str | None,
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
            thank_you_url=thank_you_url,
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


def _upkeep_line(run: UpkeepRun) -> str:
    if run.report is None:
        return "upkeep: another copy is running it; skipped"
    report = run.report
    return (
        f"upkeep: suspensions ended: {report.suspensions_ended}, "
        f"unconfirmed subscriptions deleted: {report.subscriptions_deleted}, "
        f"profiles deleted: {report.profiles_deleted}"
    )


def _echo_when_busy(run: UpkeepRun) -> None:
    """The loop says what it did only when it did something, so its log is of events."""
    report = run.report
    if report and (report.suspensions_ended or report.subscriptions_deleted):
        click.echo(_upkeep_line(run))


@click.command("upkeep")
@click.option("--once", is_flag=True, help="Run the jobs once and stop (for cron).")
def upkeep(once: bool) -> None:
    """Run `statuses expire` (suspensions that are over, the retention purge) every
    UPKEEP_INTERVAL seconds. Safe with several copies; survives database outages."""
    retention = current_app.config["UNCONFIRMED_RETENTION_DAYS"]
    if once:
        click.echo(_upkeep_line(run_once(retention)))
        return
    run_forever(current_app.config["UPKEEP_INTERVAL"], retention, on_run=_echo_when_busy)


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
    """Deliver queued emails, retrying failures with backoff. Run as many as you like; each
    waits out a database restart or a mail outage and carries on."""
    worker.work(batch, idle, once=once, echo=click.echo)


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
    password = _read_password("Password", password_stdin)
    try:
        user = admin_users.create_user(email, password)
    except InvalidInput as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"created admin user {user.email}")


def _read_password(prompt: str, from_stdin: bool) -> str:
    """A password from one line of standard input (scripts), or typed twice at a hidden prompt."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(click.prompt(prompt, hide_input=True, confirmation_prompt=True))


@users_cli.command("password")
@click.argument("email")
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from standard input (for scripts)."
)
def change_password(email: str, password_stdin: bool) -> None:
    """Set an admin user's password (prompted twice unless --password-stdin); every session the
    user has open, on any browser, ends."""
    password = _read_password("New password", password_stdin)
    try:
        user = admin_users.change_password(email, password)
    except InvalidInput as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"changed the password of {user.email}; their sessions have ended")


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True))
@click.option(
    "--resource", "slug", default=None, help="The resource of rows that name none themselves."
)
@click.option("--show", default=20, show_default=True, help="Rejected rows to print.")
def import_command(file: str, slug: str | None, show: int) -> None:
    """Import existing subscribers from a CSV file (columns email, name, status, resource,
    consent date). Every row goes through the status rules with cause `import`; rejected rows
    are printed with their line number and reason."""
    try:
        job = imports.create_job(os.path.abspath(file), file, slug, imports.CLI_ACTOR)
    except InvalidInput as error:
        raise click.ClickException(str(error)) from None
    except NotFound as error:
        raise click.ClickException(str(error)) from None
    with click.progressbar(length=job.total_rows, label="Importing", file=sys.stderr) as bar:
        job = imports.run_job(job.id, on_progress=bar.update)
    click.echo(
        f"import {job.id}: {job.state}. rows {job.processed_rows}, imported {job.imported_rows}, "
        f"unchanged {job.unchanged_rows}, rejected {job.rejected_rows}, "
        f"added to the suppression list {job.suppressed_addresses}"
    )
    for rejection in queries.import_rejections(job.id, limit=show):
        click.echo(f"line {rejection.line}: {rejection.email or ''}: {rejection.reason}")
    if job.rejected_rows > show:
        click.echo(f"... and {job.rejected_rows - show} more rejected rows")
    if job.state != imports.JobState.DONE:
        raise click.ClickException(job.error or "the import failed")


@click.command("export")
@click.argument("slug")
@click.option("--channel", default="email", show_default=True)
@click.option(
    "--output", type=click.Path(dir_okay=False, writable=True), help="A file; default stdout."
)
def export_command(slug: str, channel: str, output: str | None) -> None:
    """Write a resource's audience (everyone who may be sent it on the channel, with their
    links) as CSV, streamed in constant memory. Formula-like cells are quoted for spreadsheets."""
    try:
        resource = resource_for(slug, parse_channel(channel))
    except (InvalidInput, NotFound) as error:
        raise click.ClickException(str(error)) from None
    blocks = exports.audience_csv(resource.id, channel, utcnow(), safe=True)
    if output is None:
        exports.write_all(blocks, sys.stdout)
        return
    with open(output, "w", encoding="utf-8", newline="") as out:
        rows = exports.write_all(blocks, out)
    click.echo(f"wrote {rows} rows to {output}", err=True)


@click.command("inbound")
@click.option("--host", default=None, help="Address to listen on (default INBOUND_HOST).")
@click.option("--port", type=int, default=None, help="Port (default INBOUND_PORT).")
@click.option(
    "--protocol",
    type=click.Choice(["smtp", "lmtp"]),
    default=None,
    help="smtp for an MX, lmtp for a local MTA's transport (default INBOUND_PROTOCOL).",
)
def inbound_command(host: str | None, port: int | None, protocol: str | None) -> None:
    """Receive mail to UNSUBSCRIBE_MAILTO and unsubscribe as the one-click link does."""
    from app.inbound_server import InboundServer, serve_until_stopped

    # The app itself, not the proxy: the messages are applied on other threads.
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        server = InboundServer(
            app, host=host, port=port, protocol=protocol, echo=lambda line: print(line, flush=True)
        )
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    try:
        serve_until_stopped(server)
    except OSError as error:
        raise click.ClickException(f"cannot listen: {error}") from None


def _words(values: tuple[str, ...]) -> list[str] | None:
    """An option given several times or as a comma-separated list; not given: None (all)."""
    words = [word.strip() for value in values for word in value.split(",") if word.strip()]
    return words or None


@webhooks_cli.command("add")
@click.argument("url")
@click.option(
    "--events",
    multiple=True,
    help="Event types to send (comma-separated or repeated); default all.",
)
@click.option(
    "--resources",
    multiple=True,
    help="Resource slugs whose subscription changes to send; default all.",
)
def add_webhook(url: str, events: tuple[str, ...], resources: tuple[str, ...]) -> None:
    """Add an endpoint and print its id and its secret. The secret is shown this once: the
    receiver checks each delivery's signature with it."""
    choice = webhook_endpoints.Choice(_words(events), _words(resources))
    try:
        endpoint, secret = webhook_endpoints.create_endpoint(url, choice)
    except (InvalidInput, NotFound) as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"endpoint {endpoint.id}: {endpoint.url}")
    click.echo(secret)


@webhooks_cli.command("list")
def list_webhooks() -> None:
    """Every endpoint: id, enabled or paused (and why), URL, event types, resources."""
    slugs = {resource.id: resource.slug for resource in queries.all_resources()}
    for row in queries.webhook_endpoints():
        state = "enabled" if row.enabled else f"paused ({row.paused_reason})"
        types = ",".join(row.event_types) if row.event_types is not None else "all events"
        chosen = row.resource_ids
        where = ",".join(slugs.get(i, str(i)) for i in chosen) if chosen else "all resources"
        click.echo(f"{row.id}\t{state}\t{row.url}\t{types}\t{where}")


@webhooks_cli.command("remove")
@click.argument("endpoint_id", type=int)
def remove_webhook(endpoint_id: int) -> None:
    """Remove an endpoint and its delivery log; nothing more is sent to it."""
    try:
        webhook_endpoints.delete_endpoint(endpoint_id)
    except NotFound as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"removed endpoint {endpoint_id}")


def register_commands(app: Flask) -> None:
    """Attach the command groups to the app."""
    app.cli.add_command(resources_cli)
    app.cli.add_command(statuses_cli)
    app.cli.add_command(outbox_cli)
    app.cli.add_command(api_keys_cli)
    app.cli.add_command(users_cli)
    app.cli.add_command(webhooks_cli)
    app.cli.add_command(demo)
    app.cli.add_command(upkeep)
    app.cli.add_command(import_command)
    app.cli.add_command(export_command)
    app.cli.add_command(inbound_command)
