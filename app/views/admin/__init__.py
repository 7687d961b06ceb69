"""The admin view for the marketing team (SPEC §4), under /admin/.

Every page needs a logged-in admin user; the guard is attached when the blueprint is registered
(``register_admin``), so a new route cannot forget it. A browser without a session is sent to
the login page; an API client gets a 401 JSON error. Each section of the admin lives in its own
module here and adds its routes to the one ``admin`` blueprint.
"""

from __future__ import annotations

from flask import (
    Blueprint,
    Flask,
    current_app,
    redirect,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_login import current_user, logout_user

from app.database import utcnow
from app.extensions import login_manager
from app.services.admin_users import user_by_id
from app.services.statuses import Actor

admin = Blueprint("admin", __name__, url_prefix="/admin")

# Pages anyone may open: the login form itself.
OPEN_ENDPOINTS = {"admin.login"}
# The navigation of every admin page: (endpoint, label). Sections not built yet are skipped.
NAVIGATION = [
    ("admin.dashboard", "Dashboard"),
    ("admin.profiles", "Profiles"),
    ("admin.resources", "Resources"),
    ("admin.suppressions", "Suppression list"),
    ("admin.imports", "Import"),
    ("admin.exports", "Export"),
    ("admin.api_keys", "API keys"),
    ("admin.webhooks", "Webhooks"),
]
SESSION_STARTED = "admin_login_at"


def wants_json() -> bool:
    """An API client (it sends a bearer token or prefers JSON) gets a 401, not a redirect."""
    if request.headers.get("Authorization"):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def session_expired() -> bool:
    """Sessions end ADMIN_SESSION_LIFETIME seconds after login, however busy they are."""
    started = session.get(SESSION_STARTED)
    if not isinstance(started, int | float):
        return True
    age = utcnow().timestamp() - started
    return not 0 <= age <= current_app.config["ADMIN_SESSION_LIFETIME"]


def require_login() -> ResponseReturnValue | None:
    """The admin blueprint's guard: every page but the login form needs a live session."""
    if request.endpoint in OPEN_ENDPOINTS:
        return None
    if current_user.is_authenticated and not session_expired():
        return None
    if current_user.is_authenticated:
        logout_user()
    if wants_json():
        body = {"error": {"code": "login_required", "message": "log in to the admin view"}}
        return body, 401
    return redirect(url_for("admin.login", next=request.full_path.rstrip("?")))


def admin_actor(reason: str | None = None) -> Actor:
    """The logged-in admin as the event log records them: their address, IP and browser."""
    user_agent = request.headers.get("User-Agent", "")[:500] or None
    return Actor(
        name=current_user.email, ip=request.remote_addr, user_agent=user_agent, reason=reason
    )


@admin.context_processor
def _navigation() -> dict[str, object]:
    """The sections every admin page links to, for the ones this app has, and the logged-in
    user its bar names. Only the admin's pages get ``current_user``: Flask-Login's own context
    processor would load it for every public page as well (``register_admin``)."""
    built = [
        (endpoint, label)
        for endpoint, label in NAVIGATION
        if endpoint in current_app.view_functions
    ]
    return {"admin_navigation": built, "current_user": current_user}


def search_term(name: str) -> str:
    """A search box's text as the queries take it: trimmed, at most 320 characters (the
    longest address). A NUL byte never gets here: ``errors.refuse_nul_bytes`` answers 400."""
    return request.args.get(name, "").strip()[:320]


def register_admin(app: Flask) -> None:
    """Register the admin view with its guard: a login session, CSRF on every form."""
    from app.views.admin import (  # noqa: F401  (each module adds its routes to ``admin``)
        api_keys,
        auth,
        dashboard,
        exports,
        imports,
        profiles,
        resources,
        suppressions,
        webhooks,
    )

    # No app-wide context processor: a public page never shows the user, and the processor
    # would look them up for every render; ``_navigation`` gives the admin's pages theirs.
    login_manager.init_app(app, add_context_processor=False)
    login_manager.user_loader(user_by_id)
    app.permanent_session_lifetime = app.config["ADMIN_SESSION_LIFETIME"]
    app.register_blueprint(admin)
    imports.register_upload_limit(app)
    # The guard belongs to this app's registration of the blueprint, for every route in it.
    app.before_request_funcs.setdefault(admin.name, []).append(require_login)
