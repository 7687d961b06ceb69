"""What protects optin where a person or a browser meets it: the secret key that signs sessions
and links when none is set, and the protective headers on every response.
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
import unicodedata
from collections.abc import Iterable
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

# The key generated when SECRET_KEY is not set lives in the instance folder under this name.
GENERATED_KEY_FILE = "secret_key"
# The longest thank-you URL a resource may have (its column is 500 characters).
MAX_URL_LENGTH = 500


def instance_secret_key(instance_path: str) -> str:
    """The key in ``instance/secret_key``, generated on the first start without SECRET_KEY.

    A constant default would let anyone forge an admin session and every customer link, so a
    missing key is made at random and kept, readable by its owner only. Two processes that start
    together must agree on it: the new key is written to a private temporary file and linked to
    its name, which either succeeds whole or finds the other process's key there already; nobody
    ever reads a half-written file.
    """
    path = os.path.join(instance_path, GENERATED_KEY_FILE)
    if os.path.exists(path):
        return _read_key(path)
    key = secrets.token_urlsafe(48)
    handle, draft = tempfile.mkstemp(dir=instance_path, prefix=".secret_key-")  # mode 0600
    try:
        with os.fdopen(handle, "w") as file:
            file.write(key + "\n")
            file.flush()
            os.fsync(file.fileno())
        os.link(draft, path)
    except FileExistsError:
        return _read_key(path)
    finally:
        os.unlink(draft)
    logger.warning(
        "SECRET_KEY is not set: generated a random key into %s (mode 0600). Every process and "
        "server of this optin must use the same key: set SECRET_KEY to one value everywhere, or "
        "share this file, or links and sessions made by one are refused by the others.",
        path,
    )
    return key


def _read_key(path: str) -> str:
    with open(path, encoding="utf-8") as file:
        key = file.read().strip()
    if not key:
        raise RuntimeError(f"{path} is empty: delete it to generate a new key, or set SECRET_KEY")
    return key


def thank_you_url_problem(url: str, trusted_hosts: Iterable[str]) -> str | None:
    """Why ``url`` may not be a resource's thank-you address, or None when it may.

    A visitor is sent there after a signup, so it must name a trusted host beyond doubt. Browsers
    read URLs more loosely than ``urlsplit``: they turn a backslash into a slash and drop tabs
    and newlines, so ``https://evil.example\\@trusted.example/`` is a user name "evil.example\\"
    on trusted.example to Python and the host evil.example to a browser. Whatever could be read
    two ways is refused, rather than guessed at.
    """
    if len(url) > MAX_URL_LENGTH:
        return f"a thank-you URL has at most {MAX_URL_LENGTH} characters"
    if "\\" in url:
        return "a thank-you URL may not contain a backslash"
    if any(char.isspace() or unicodedata.category(char) in ("Cc", "Cf") for char in url):
        return "a thank-you URL may not contain spaces, tabs, line breaks or control characters"
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".")
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number)
    except ValueError:
        return "a thank-you URL must be a well-formed http or https address"
    if parts.scheme not in ("https", "http") or not url.lower().startswith(parts.scheme + "://"):
        return "a thank-you URL starts with https:// (or http://)"
    if "@" in parts.netloc:
        return "a thank-you URL may not contain a user name or password"
    trusted = {name.strip().lower().rstrip(".") for name in trusted_hosts}
    if not host or host not in trusted:
        listed = ", ".join(sorted(trusted)) or "none"
        return (
            f"a thank-you URL must be on a host in TRUSTED_REDIRECT_HOSTS (now: {listed}), "
            f"not {host or 'no host'}"
        )
    return None
