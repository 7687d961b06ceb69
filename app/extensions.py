"""The Flask extensions, created unbound and attached to an app in ``create_app``."""

from __future__ import annotations

import copy
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar, cast

from flask import Flask, current_app
from flask_babel import Babel, Domain
from flask_limiter import Limiter, RequestLimit
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_mail import Mail
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import MetaData, Table
from sqlalchemy.orm import DeclarativeBase

from app.i18n import RememberingDomain

if TYPE_CHECKING:
    from limits.storage import Storage

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
# The key of each app's own Limiter in ``app.extensions``.
APP_LIMITER = "optin.limiter"


class DeclaredLimits(Limiter):
    """The rate limits the views declare, counted by a Limiter of each app's own.

    The views declare their limits on this one module-level object, as Flask-Limiter's guide
    shows: ``@limiter.limit`` at import, ``shared_limit`` and ``exempt`` at registration. But a
    Limiter counts in the storage, with the strategy and settings, of the last app given to its
    ``init_app``, so a second app in the same process (a test's, a benchmark's) would take over
    the first one's counters, or point it at another Redis. ``init_app`` therefore gives each app
    a Limiter of its own that shares these declarations (the same dictionaries, so a route
    exempted later counts too) but takes its storage, strategy, default limits and on/off switch
    from that app's settings; the checks the decorators make here are handed to the current
    app's Limiter.
    """

    def init_app(self, app: Flask) -> None:
        own = Limiter(key_func=get_remote_address)
        declared = copy.copy(self.limit_manager)  # the declarations' dictionaries, shared
        # Limits for every route come from each app's RATELIMIT_DEFAULT / RATELIMIT_APPLICATION.
        declared.set_default_limits([])
        declared.set_application_limits([])
        own.limit_manager = declared
        # The views whose decorators check their own limits (the app-wide check skips them).
        own._marked_for_limiting = self._marked_for_limiting
        own.init_app(app)
        app.extensions[APP_LIMITER] = own

    @staticmethod
    def of_current_app() -> Limiter:
        """The current app's own Limiter, which holds its counters."""
        return cast(Limiter, current_app.extensions[APP_LIMITER])

    def _check_request_limit(
        self, callable_name: str | None = None, in_middleware: bool = True
    ) -> None:
        # What a decorated view calls before it runs (Flask-Limiter's own decorator). With
        # RATELIMIT_ENABLED off, Flask-Limiter would still find and filter the view's limits
        # before deciding that none applies.
        own = self.of_current_app()
        if own.enabled:
            own._check_request_limit(callable_name, in_middleware)

    def identify_request(self) -> str:
        return self.of_current_app().identify_request()

    @property
    def storage(self) -> Storage:
        return self.of_current_app().storage

    @property
    def current_limit(self) -> RequestLimit | None:
        return self.of_current_app().current_limit


# Limits are declared on the views that need them; each app's RATELIMIT_* settings configure
# where its own Limiter counts them.
limiter = DeclaredLimits(key_func=get_remote_address)


def limit_from(setting: str) -> Callable[[], str]:
    """The limit named by the setting ``setting``, for ``@limiter.limit``: read at each request,
    not at import, so that a test's or the instance's value applies."""

    def limit() -> str:
        value: str = current_app.config[setting]
        return value

    return limit


class _OptinBabel(Babel):  # type: ignore[misc]  # Flask-Babel has no type hints
    """Flask-Babel, whose domain remembers a request's translations (``app.i18n``)."""

    @cached_property
    def domain_instance(self) -> Domain:
        return RememberingDomain(domain=self.domain)


babel = _OptinBabel()
# Admin sessions; the admin blueprint's guard decides what an anonymous request gets.
login_manager = LoginManager()
