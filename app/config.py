"""Settings: the defaults, then ``instance/config.py``, then environment variables of the same name.

Every setting, the extensions' own included (``MAIL_*``, ``RATELIMIT_*``), can come from an
environment variable with exactly its name; the README lists each one with its default.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

# The default of a secret that has none. Bandit takes any constant under a *PASSWORD or SECRET*
# name for a hard-coded secret, None included; a name keeps that check on for every real string
# in DEFAULTS, where a "nosec" would switch it off for the whole dict.
NOT_SET = None

DEFAULTS: dict[str, Any] = {
    # Signs sessions and every link optin sends. Rotate by moving the old key to the fallbacks.
    # Not set: a random key is generated once into instance/secret_key (app/security.py).
    "SECRET_KEY": NOT_SET,
    "SECRET_KEY_FALLBACKS": [],
    # None: SQLite in the instance folder.
    "DATABASE_URL": None,
    # Flask-SQLAlchemy's engine options (in the environment a JSON object). A connection is tested
    # with a cheap round trip when it leaves the pool, so that after a database restart no
    # request meets a connection the server has closed.
    "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
    # The public address that links in emails point to.
    "BASE_URL": "http://127.0.0.1:5000",
    "ORGANIZATION_NAME": "optin demo",
    "ORGANIZATION_ADDRESS": "1 Example Street, 12345 Example City",
    # "console": print each message and write it as .eml under instance/mail; "smtp": Flask-Mail.
    "MAIL_BACKEND": "console",
    "MAIL_SERVER": "localhost",
    "MAIL_PORT": 25,
    "MAIL_USE_TLS": False,
    "MAIL_USE_SSL": False,
    "MAIL_USERNAME": None,
    "MAIL_PASSWORD": NOT_SET,
    "MAIL_DEFAULT_SENDER": "optin <noreply@localhost>",
    "MAIL_MAX_EMAILS": None,
    "MAIL_SUPPRESS_SEND": False,
    "MAIL_ASCII_ATTACHMENTS": False,
    "MAIL_DEBUG": False,
    "RATELIMIT_ENABLED": True,
    "RATELIMIT_STORAGE_URI": "memory://",
    "RATELIMIT_STRATEGY": "fixed-window",
    "RATELIMIT_HEADERS_ENABLED": True,
    # The mailto: address in List-Unsubscribe; `flask inbound` and the providers' inbound hooks
    # unsubscribe whoever writes to it with the subject the header gives.
    "UNSUBSCRIBE_MAILTO": "unsubscribe@localhost",
    # `flask inbound`: where it listens, SMTP (an MX) or LMTP (a local MTA's transport), and the
    # largest message it takes (announced with SIZE; a reply quoting a newsletter fits easily).
    "INBOUND_HOST": "127.0.0.1",
    "INBOUND_PORT": 2525,
    "INBOUND_PROTOCOL": "smtp",
    "INBOUND_MAX_BYTES": 10 * 1024 * 1024,
    # Deliver queued emails from the web process right after the response (the embedded default).
    # Turn off where `flask outbox work` processes run.
    "OUTBOX_DELIVER_INLINE": True,
    # With OUTBOX_DELIVER_INLINE no worker runs: at most this often, after a response, the web
    # process sends what is due again (a mail or webhook whose first try failed). 0: never.
    "OUTBOX_WEB_RETRY_SECONDS": 30,
    # Seconds a claimed message is left to the worker (or web process) that claimed it; after
    # that its claimer is taken for dead and any worker sends it. Longer than a batch takes.
    "OUTBOX_LEASE_SECONDS": 300,
    # With OUTBOX_DELIVER_INLINE: the longest the record of a mail the web process sent waits to
    # be written with the process's next write transaction, before a timer writes it on its own
    # (outbox.SentRecords). 0: each record in a transaction of its own, at once.
    "OUTBOX_RECORD_DELAY_SECONDS": 0.1,
    # Seconds a web process keeps its copy of the resources and consent texts (queries/catalogue.py)
    # before reading them again: the longest an admin's edit made in another process takes to show.
    "CATALOGUE_CACHE_SECONDS": 5,
    # At most this many confirmation emails to one address per day (SPEC §1 rule 4).
    "CONFIRMATIONS_PER_ADDRESS_PER_DAY": 3,
    # Flask-Limiter limits for the public forms, per client IP and per email address.
    "SIGNUP_LIMIT_PER_IP": "30 per hour; 10 per minute",
    "SIGNUP_LIMIT_PER_ADDRESS": "5 per day",
    # Flask-Limiter limit on the JSON API, per API key (not per IP): room for a sending platform's
    # many workers asking one address at a time, audience exports and 10,000-address batches.
    "API_RATE_LIMIT": "1200 per minute",
    # Provider webhooks. SES through SNS: only messages of these topics (full ARNs) are accepted,
    # since anyone can have Amazon sign a message of a topic of their own; empty: webhook off.
    "SNS_TOPIC_ARNS": [],
    # The signing certificate and SubscribeURL must be on a host (the whole network location: no
    # port, no user) matching this pattern, over HTTPS. The region part admits no other dot, so an
    # S3 bucket's virtual host (sns.s3.amazonaws.com) does not match. Older messages are replays.
    "SNS_HOST_PATTERN": (
        r"sns\.(?:[a-z]{2}(?:-gov)?-[a-z]+-[0-9]+\.amazonaws\.com"
        r"|cn-[a-z]+-[0-9]+\.amazonaws\.com\.cn)"
    ),
    "SNS_REQUIRE_HTTPS": True,
    "SNS_MAX_AGE": 3600,
    # SendGrid's signed Event Webhook: the verification key (base64 DER), and the replay window.
    "SENDGRID_WEBHOOK_PUBLIC_KEY": None,
    "SENDGRID_MAX_AGE": 600,
    # SendGrid's Inbound Parse signs with the key of its own security policy (base64 DER).
    "SENDGRID_INBOUND_PUBLIC_KEY": None,
    # Postmark: the basic-auth credentials put into the webhook's URL.
    "POSTMARK_WEBHOOK_USERNAME": None,
    "POSTMARK_WEBHOOK_PASSWORD": NOT_SET,
    # Seconds a confirmation link stays valid (7 days).
    "CONFIRM_MAX_AGE": 7 * 24 * 3600,
    # Seconds a "download or erase my data" link stays valid (1 hour): it is proof that whoever
    # holds it read the mailbox just now, unlike the long-lived links in every message.
    "DATA_LINK_MAX_AGE": 3600,
    # Rule 8: unconfirmed subscriptions older than this are deleted by `statuses expire`.
    "UNCONFIRMED_RETENTION_DAYS": 30,
    # Soft bounces: this many within the window (days) suspend the profile for the given days.
    "SOFT_BOUNCE_LIMIT": 3,
    "SOFT_BOUNCE_WINDOW": 7,
    "SOFT_BOUNCE_SUSPEND_DAYS": 7,
    # Hosts a resource's thank-you URL may point to (never an open redirect).
    "TRUSTED_REDIRECT_HOSTS": [],
    # Sites allowed to show the signup pages in an iframe (CSP frame-ancestors sources, such as
    # https://shop.example.org); every other page, and these for any other site, refuse framing.
    "FRAME_ANCESTORS": [],
    # The session cookie (Flask's settings; any SESSION_*, REMEMBER_COOKIE_* or WTF_* variable is
    # passed on). Secure: None means "when BASE_URL is https". HttpOnly is Flask's default.
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SESSION_COOKIE_SECURE": None,
    "MAX_CONTENT_LENGTH": 1024 * 1024,
    # The admin's CSV import: the largest file its upload accepts (only that page), and how many
    # rows its preview checks against the database before the import is started.
    "IMPORT_MAX_BYTES": 200 * 1024 * 1024,
    "IMPORT_PREVIEW_ROWS": 100_000,
    # A queued or running import that has not finished a chunk for this many seconds is shown as
    # stalled: the process that ran it has ended. (A chunk of 10,000 rows takes about a second.)
    "IMPORT_STALL_SECONDS": 600,
    # How long a worker's claim on an import holds without a chunk finishing (it is renewed before
    # each chunk); after it the worker is taken for dead and the next one resumes the import.
    "IMPORT_LEASE_SECONDS": 120,
    # Proxies in front of optin whose X-Forwarded-For/-Proto to trust (0: none). The client IP
    # goes into consent records and events, so it must be the customer's, not the proxy's.
    "PROXY_FIX_X_FOR": 0,
    "PROXY_FIX_X_PROTO": 0,
    # Admin sessions end this many seconds after login, whatever the activity (8 hours).
    "ADMIN_SESSION_LIFETIME": 8 * 3600,
    # Flask-Limiter limits on admin login attempts, per client IP and per login address.
    "ADMIN_LOGIN_LIMIT_PER_IP": "10 per minute; 50 per hour",
    "ADMIN_LOGIN_LIMIT_PER_ADDRESS": "5 per minute; 20 per hour",
    # Move everything alive once the app is built (modules, metadata, templates: about 100,000
    # objects that live as long as the process) out of the garbage collector's reach, so that a
    # request that allocates a lot (a 10,000-address batch) does not pay for walking them again.
    # Off under TESTING, where hundreds of apps are made in one process.
    "GC_FREEZE": True,
    # Seconds between two runs of `flask upkeep` (statuses expire: suspensions that are over and
    # the retention purge), the Procfile's periodic process.
    "UPKEEP_INTERVAL": 60,
    # /metrics answers requests from this machine; from elsewhere only with this Bearer token
    # (unset: not at all).
    "METRICS_TOKEN": NOT_SET,
    # "json": every log record one JSON object a line (time, level, logger, message, and the
    # request's id and route); "text": Python's default.
    "LOG_FORMAT": "text",
    # Outgoing webhooks (issue 15). Plain http:// endpoint URLs are refused unless this is on
    # (tests, a receiver on the same machine in development); https only in production.
    "WEBHOOKS_ALLOW_HTTP": False,
    # Endpoints whose host resolves to a private, loopback, link-local or reserved address are
    # refused at send time (SSRF) unless this is on.
    "WEBHOOKS_ALLOW_PRIVATE": False,
    # Seconds to wait for an endpoint's connection, then for each read of its answer.
    "WEBHOOKS_CONNECT_TIMEOUT": 5,
    "WEBHOOKS_READ_TIMEOUT": 10,
    # Seconds a claimed delivery is left to the worker that claimed it (longer than a batch).
    "WEBHOOKS_LEASE_SECONDS": 300,
    # Slug of the demo resource that `make run` creates.
    "DEMO_RESOURCE": "newsletter",
}

# Extensions read more settings than the ones above; any variable with these prefixes is passed on.
PASSED_THROUGH_PREFIXES = (
    "MAIL_",
    "RATELIMIT_",
    "SQLALCHEMY_",
    "SESSION_",
    "REMEMBER_COOKIE_",
    "WTF_",
)


def parse_env_value(raw: str, default: Any) -> Any:
    """Read an environment string as the type of the setting's default."""
    if isinstance(default, bool):
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    if isinstance(default, list):
        return [item.strip() for item in raw.split(",") if item.strip()]
    if isinstance(default, dict):
        value = json.loads(raw)
        if not isinstance(value, dict):
            raise ValueError("a JSON object is expected")
        return value
    if default is None:
        try:
            value = json.loads(raw)
        except ValueError:
            return raw
        return value if isinstance(value, bool | int | float) else raw
    return raw


def from_environment(environ: Mapping[str, str], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Every known setting, and every extension setting, that the environment sets."""
    found: dict[str, Any] = {}
    for name, raw in environ.items():
        if name not in defaults and not name.startswith(PASSED_THROUGH_PREFIXES):
            continue
        try:
            found[name] = parse_env_value(raw, defaults.get(name))
        except ValueError:
            raise ValueError(f"{name}={raw!r} is not a valid value for {name}") from None
    return found


def database_uri(url: str | None, instance_path: str) -> str:
    """The SQLAlchemy URI for DATABASE_URL; plain ``postgres://`` URLs use psycopg 3."""
    if not url:
        return "sqlite:///" + os.path.join(instance_path, "optin.sqlite3")
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url
