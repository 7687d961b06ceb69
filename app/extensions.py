"""The Flask extensions, created unbound and attached to an app in ``create_app``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from flask import current_app
from flask_babel import Babel
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_mail import Mail
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import MetaData, Table
from sqlalchemy.orm import DeclarativeBase

# Named constraints, so that Alembic migrations can alter them on SQLite and PostgreSQL alike.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    if TYPE_CHECKING:
        # Every model here is mapped to a Table (DeclarativeBase allows any FromClause), so
        # Model.__table__ goes to insert() and update() as it is.
        __table__: ClassVar[Table]


db = SQLAlchemy(model_class=Base)
# The models' base class. mypy cannot take an object's attribute (db.Model) as a base class
# (python/mypy#8603), so it is told the declarative base that db.Model subclasses at run time:
# the columns are typed by SQLAlchemy 2's Mapped[] either way.
if TYPE_CHECKING:
    Model = Base
else:
    Model = db.Model
# Batch mode lets Alembic alter tables on SQLite, which cannot ALTER most things in place.
migrate = Migrate(render_as_batch=True)
mail = Mail()
csrf = CSRFProtect()
# Limits are declared on the views that need them; RATELIMIT_* settings configure the storage.
limiter = Limiter(key_func=get_remote_address)


def limit_from(setting: str) -> Callable[[], str]:
    """The limit named by the setting ``setting``, for ``@limiter.limit``: read at each request,
    not at import, so that a test's or the instance's value applies."""

    def limit() -> str:
        value: str = current_app.config[setting]
        return value

    return limit


babel = Babel()
# Admin sessions; the admin blueprint's guard decides what an anonymous request gets.
login_manager = LoginManager()
