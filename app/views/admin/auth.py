"""The admin login and logout (``/admin/login``, ``/admin/logout``)."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app, g, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_user, logout_user

from app.admin_forms import LoginForm
from app.database import utcnow
from app.extensions import limit_from, limiter
from app.services.admin_users import authenticate, end_sessions
from app.views.admin import SESSION_STARTED, admin


def login_address_key() -> str:
    """The rate-limit key for "per address": the login name typed in, lower-cased."""
    return "admin-login:" + request.form.get("email", "").strip().lower()[:320]


def local_target(target: str | None) -> str:
    """Where to go after login: a path on this site only, never another host."""
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and target.startswith("/admin/"):
            return target
    return url_for("admin.index")


@admin.route("/login", methods=["GET", "POST"])
@limiter.limit(limit_from("ADMIN_LOGIN_LIMIT_PER_IP"), methods=["POST"])
@limiter.limit(
    limit_from("ADMIN_LOGIN_LIMIT_PER_ADDRESS"), key_func=login_address_key, methods=["POST"]
)
def login() -> ResponseReturnValue:
    """The login form; a wrong address and a wrong password get the same answer."""
    form = LoginForm()
    if form.validate_on_submit():
        user = authenticate(form.email.data or "", form.password.data or "")
        if user is not None:
            login_user(user)
            session.permanent = True
            session[SESSION_STARTED] = utcnow().timestamp()
            return redirect(local_target(request.args.get("next")), code=303)
        form.password.errors = ["Wrong email address or password."]
    status = 400 if request.method == "POST" else 200
    return render_template("admin/login.html", form=form), status


@admin.post("/logout")
def logout() -> ResponseReturnValue:
    """End the session. A POST, so no link can log anyone out; CSRFProtect checks its token.
    A copy of the cookie taken before ends with it: the user's session version moves on."""
    if current_user.is_authenticated:
        end_sessions(current_user.id)
    logout_user()
    session.clear()
    # The CSRF token cached for this request belonged to the session just cleared.
    g.pop("csrf_token", None)
    return redirect(url_for("admin.login"), code=303)


@admin.get("/")
def index() -> ResponseReturnValue:
    """The admin's front page: the dashboard once it exists."""
    if "admin.dashboard" in current_app.view_functions:
        return redirect(url_for("admin.dashboard"))
    return render_template("admin/index.html")
