"""Admin users (SPEC §4): created on the command line, passwords kept as Werkzeug hashes."""

from __future__ import annotations

from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from app.addresses import InvalidEmail, normalize_email
from app.database import transactional, utcnow
from app.extensions import db
from app.models import AdminUser
from app.services.errors import InvalidInput

MIN_PASSWORD_LENGTH = 10
# Checked when the address is unknown, so that a wrong address costs as long as a wrong password
# and the login answer's timing does not tell which addresses are admins.
_DUMMY_HASH = generate_password_hash("not a password of anyone")


@transactional
def create_user(email: str, password: str) -> AdminUser:
    """A new admin user. Refuses a short password and an address that is taken."""
    try:
        address = normalize_email(email)
    except InvalidEmail as error:
        raise InvalidInput(f"not a valid email address: {error}") from None
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
    if db.session.scalar(select(AdminUser).where(AdminUser.email == address)) is not None:
        raise InvalidInput(f"an admin user {address} exists already")
    user = AdminUser(email=address, password_hash=generate_password_hash(password))
    db.session.add(user)
    return user


def authenticate(email: str, password: str) -> AdminUser | None:
    """The user whose address and password these are, with the login time recorded, or None."""
    try:
        address = normalize_email(email)
    except InvalidEmail:
        address = None
    user = (
        db.session.scalar(select(AdminUser).where(AdminUser.email == address)) if address else None
    )
    if user is None:
        check_password_hash(_DUMMY_HASH, password)
        return None
    if not check_password_hash(user.password_hash, password):
        return None
    return _record_login(user.id)


@transactional
def _record_login(user_id: int) -> AdminUser:
    fresh = db.session.get(AdminUser, user_id)
    if fresh is None:  # deleted between the password check and now
        raise InvalidInput("no such admin user")
    fresh.last_login_at = utcnow()
    return fresh


def user_by_id(session_id: str) -> AdminUser | None:
    """Flask-Login's user loader: the user a session names (``AdminUser.get_id``), if it still
    exists and the session was made under its current session version (no logout or password
    change since)."""
    user_id, _, version = session_id.partition(":")
    if not user_id.isdigit() or not version.isdigit():
        return None
    user = db.session.get(AdminUser, int(user_id))
    if user is None or user.session_version != int(version):
        return None
    return user


@transactional
def end_sessions(user_id: int) -> None:
    """End every session of this user, on every browser: the cookies stay valid signatures, so
    the version they name is made stale instead."""
    user = db.session.get(AdminUser, user_id)
    if user is not None:
        user.session_version += 1


@transactional
def change_password(email: str, password: str) -> AdminUser:
    """A new password for an admin user; every session made with the old one ends."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
    try:
        address = normalize_email(email)
    except InvalidEmail as error:
        raise InvalidInput(f"not a valid email address: {error}") from None
    user = db.session.scalar(select(AdminUser).where(AdminUser.email == address))
    if user is None:
        raise InvalidInput(f"no admin user {address}")
    user.password_hash = generate_password_hash(password)
    user.session_version += 1
    return user
