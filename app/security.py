"""What protects optin where a person or a browser meets it: the secret key that signs sessions
and links when none is set, and the protective headers on every response.
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile

logger = logging.getLogger(__name__)

# The key generated when SECRET_KEY is not set lives in the instance folder under this name.
GENERATED_KEY_FILE = "secret_key"


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
