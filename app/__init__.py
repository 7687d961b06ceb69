"""optin: a double-opt-in subscription frontend. ``create_app`` builds the Flask application."""

from __future__ import annotations

import gc
import inspect
import os
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from app.config import DEFAULTS, database_uri, from_environment
from app.extensions import babel, csrf, db, limiter, mail, migrate
from app.logs import configure_logging, register_request_ids
from app.security import (
    SignedCookieSessions,
    instance_secret_key,
    register_protective_headers,
)

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Optin(Flask):
    """Flask, remembering for each view and hook whether it must be run as a coroutine: Flask
    asks ``inspect.iscoroutinefunction`` of every before-request, after-request and teardown
    hook and of the view, at every request (fifteen times for a page here), about functions
    that never change. Held weakly: a request's own ``after_this_request`` function goes with
    it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The answer, not the runnable: a value that refers to its key would keep it alive.
        self._coroutines: weakref.WeakKeyDictionary[Callable[..., Any], bool]
        self._coroutines = weakref.WeakKeyDictionary()

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        try:
            coroutine = self._coroutines.get(func)
            if coroutine is None:
                coroutine = self._coroutines[func] = inspect.iscoroutinefunction(func)
        except TypeError:  # a callable that takes no weak reference: asked every time
            return super().ensure_sync(func)
        return super().ensure_sync(func) if coroutine else func


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The application, configured from the defaults, ``instance/config.py``, the environment and
    finally ``config`` (which tests use), in that order of precedence (last wins)."""
    app = Optin(
        __name__,
        instance_path=os.environ.get("OPTIN_INSTANCE_PATH")
        or os.path.join(PROJECT_ROOT, "instance"),
        instance_relative_config=True,
        template_folder=os.path.join(PROJECT_ROOT, "templates"),
        static_folder=os.path.join(PROJECT_ROOT, "static"),
    )
    app.config.from_mapping(DEFAULTS)
    app.config.from_pyfile("config.py", silent=True)
    app.config.update(from_environment(os.environ, DEFAULTS))
    if config:
        app.config.update(config)
    # First of all, so that Flask's own logger finds the JSON handler and adds no other.
    configure_logging(app.config["LOG_FORMAT"])
    os.makedirs(app.instance_path, exist_ok=True)
    if not app.config["SECRET_KEY"]:
        app.config["SECRET_KEY"] = instance_secret_key(app.instance_path)
    app.session_interface = SignedCookieSessions()
    # JSON keys in the order the code writes them (SPEC §3's order), not sorted: sorting a
    # 10,000-answer batch costs time and reads worse.
    app.json.sort_keys = False  # type: ignore[attr-defined]  # DefaultJSONProvider's, typed as its base
    app.config["SQLALCHEMY_DATABASE_URI"] = database_uri(
        app.config["DATABASE_URL"], app.instance_path
    )
    # A copy: Flask-SQLAlchemy writes the URL into this dict, which would otherwise be DEFAULTS'.
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = dict(app.config["SQLALCHEMY_ENGINE_OPTIONS"])

    if app.config["PROXY_FIX_X_FOR"] or app.config["PROXY_FIX_X_PROTO"]:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]  # Flask's documented way to wrap it
            app.wsgi_app,
            x_for=app.config["PROXY_FIX_X_FOR"],
            x_proto=app.config["PROXY_FIX_X_PROTO"],
        )

    db.init_app(app)
    from app.database import let_go_of_dead_sessions

    let_go_of_dead_sessions(app)  # after db.init_app: teardowns run last-registered first
    migrate.init_app(app, db, directory=os.path.join(PROJECT_ROOT, "migrations"))
    mail.init_app(app)
    csrf.init_app(app)
    limiter.init_app(app)
    from app.i18n import register_template_helpers, select_locale

    babel.init_app(
        app,
        locale_selector=select_locale,
        default_translation_directories=os.path.join(PROJECT_ROOT, "translations"),
    )
    register_template_helpers(app)

    from app import models  # noqa: F401  (the tables must be known to Alembic and create_all)
    from app.cli import register_commands
    from app.views.admin import register_admin
    from app.views.api import register_api
    from app.views.errors import register_error_pages
    from app.views.ops import register_ops
    from app.views.public import public
    from app.views.webhooks import register_webhooks
    from app.worker import send_after_responses

    app.register_blueprint(public)
    register_api(app)
    register_admin(app)
    register_webhooks(app)
    register_error_pages(app)
    register_request_ids(app)
    register_ops(app)
    register_protective_headers(app)
    send_after_responses(app)
    register_commands(app)
    if app.config["GC_FREEZE"] and not app.testing:
        gc.freeze()
    return app
