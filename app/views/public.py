"""Pages for end customers (SPEC §2): the landing page, signup forms, the confirmation, unsubscribe
and preference links, the short-lived data link, and the form that emails a preference link.

Every link is read by ``opened``: the token's signature, then the profile's own link key, so a
link of an erased profile opens nothing whoever has its id now.

Views only parse, call one service and render. A GET never changes a status: every link opens a
page with a button, and the POST does the work (RFC 8058's one-click POST being the exception
that proves the rule: it needs no page because a mail client sends it).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from functools import lru_cache
from typing import NamedTuple

from flask import (
    Blueprint,
    Response,
    current_app,
    has_request_context,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import format_date, get_locale
from flask_babel import gettext as _
from werkzeug.exceptions import NotFound as HTTPNotFound
from werkzeug.wrappers import Response as WerkzeugResponse

from app import queries
from app.addresses import InvalidEmail, email_hash, normalize_email
from app.extensions import csrf, limit_from, limiter
from app.forms import (
    ButtonForm,
    EraseForm,
    PauseForm,
    PreferencesForm,
    PreferencesRequestForm,
    SignupAllForm,
    SignupForm,
    UnsubscribeForm,
    input_tag,
    options,
)
from app.i18n import use_locale
from app.models import Profile, Resource
from app.security import thank_you_url_problem
from app.services import preferences as preference_center  # the view preferences() has its name
from app.services import subscriptions
from app.services.errors import TransitionRefused, UnknownChannel, UnknownResource
from app.services.statuses import Actor
from app.services.subscriptions import GoneProfile
from app.status import Cause
from app.tokens import LinkTarget, Purpose, TokenExpired, TokenInvalid, make_token, read_token
from app.views.errors import error_page
from app.views.page_cache import kept_page

public = Blueprint("public", __name__)
# For templates/_fields.html: the public forms' inputs without WTForms' widget machinery.
public.add_app_template_global(input_tag, "input_tag")


class SiteUrls(NamedTuple):
    """The links in every public page's head and header (templates/base.html)."""

    home: str
    favicon: str
    icon: str
    stylesheet: str


@public.app_template_global()
def site_urls() -> SiteUrls:
    """The links of base.html, built once per mount point: four ``url_for`` were a tenth of a
    small page's rendering. The mount point (the request's script root) is the server's
    setting, not the visitor's, so the cache stays small."""
    if not has_request_context():
        return _built_site_urls()
    return _site_urls_under(request.script_root, current_app.static_url_path)


@lru_cache(maxsize=8)
def _site_urls_under(_script_root: str, _static_url_path: str | None) -> SiteUrls:
    return _built_site_urls()


def _built_site_urls() -> SiteUrls:
    return SiteUrls(
        home=url_for("public.index"),
        favicon=url_for("public.favicon"),
        icon=url_for("static", filename="favicon.svg"),
        stylesheet=url_for("static", filename="style.css"),
    )


# werkzeug's Response: flask's redirect() answers one, and flask's Response is one too.
ResponseLike = WerkzeugResponse | str | tuple[str, int]


# --- Helpers shared by the views ------------------------------------------------------------------


def visitor() -> Actor:
    """The customer, as the event log records them: no name, their IP and browser."""
    user_agent = request.headers.get("User-Agent", "")[:500] or None
    return Actor(ip=request.remote_addr, user_agent=user_agent)


def public_resource(slug: str) -> Resource:
    resource = queries.cached_resource_by_slug(slug)
    if resource is None or not resource.public:
        raise HTTPNotFound()
    return resource


def trusted_redirect(url: str | None) -> str | None:
    """A resource's thank-you URL, only if its host is in TRUSTED_REDIRECT_HOSTS."""
    if not url or thank_you_url_problem(url, current_app.config["TRUSTED_REDIRECT_HOSTS"]):
        return None
    return url


def address_key() -> str:
    """The rate-limit key for "per address": the hash of the normalised address typed into the
    form, so that the limiter's store (Redis in production) holds no address to erase."""
    try:
        return "address:" + email_hash(normalize_email(request.form.get("email", "")))
    except InvalidEmail:
        return "address:invalid:" + (request.remote_addr or "")


# The signup form's limits, read from the settings at each request.
per_ip = limit_from("SIGNUP_LIMIT_PER_IP")
per_address = limit_from("SIGNUP_LIMIT_PER_ADDRESS")


def opened(purpose: Purpose, token: str) -> tuple[LinkTarget, Profile]:
    """The target of a link and the profile it opens: its signature checked, then its key
    against the profile's (GoneProfile: erased, or not this profile's link)."""
    target = read_token(purpose, token)
    return target, subscriptions.profile_of_link(target)


@public.errorhandler(TokenExpired)
def _expired(error: TokenExpired) -> tuple[str, int]:
    """Confirmation and data links expire: offer a fresh one (the token still names them)."""
    token = (request.view_args or {}).get("token", "")
    page = "public/data_expired.html" if error.purpose is Purpose.DATA else "public/expired.html"
    return render_template(page, form=ButtonForm(), token=token), 410


@public.errorhandler(TokenInvalid)
def _invalid(_error: TokenInvalid) -> tuple[str, int]:
    return error_page(
        400,
        _("This link is not valid"),
        _("It may have been cut short or changed. Copy the whole link from the email."),
    )


@public.errorhandler(GoneProfile)
def _gone(_error: GoneProfile) -> tuple[str, int]:
    return error_page(
        410,
        _("This link no longer works"),
        _("What it pointed to has been deleted. You can sign up again from the start page."),
    )


# --- Landing and signup ---------------------------------------------------------------------------


@public.get("/")
def index() -> str:
    """The landing page: every public resource a visitor can subscribe to."""
    return render_template("public/index.html", resources=queries.cached_public_resources())


@public.get("/healthz")
def health() -> dict[str, str]:
    """For load balancers and the benchmark harness: the app is up and answers."""
    return {"status": "ok"}


@public.get("/favicon.ico")
def favicon() -> Response:
    """The icon at the address a browser asks by itself when a document names none, such as
    a JSON answer of the API; the pages link it beside static/favicon.svg."""
    return current_app.send_static_file("favicon.ico")


def _signup(
    form: SignupForm, slugs: list[str], form_name: str, thank_you: str | None
) -> ResponseLike:
    """Shared by the signup views once the form is valid: the same answer for every address."""
    if not form.website.data:  # a filled honeypot gets the same page and changes nothing
        try:
            subscriptions.request_signup(
                form.email.data or "",  # never empty: the form is valid
                slugs,
                name=(form.name.data or "").strip() or None,
                locale=str(get_locale()),
                form=form_name,
                actor=visitor(),
            )
        except (UnknownResource, UnknownChannel):
            raise HTTPNotFound() from None
    target = trusted_redirect(thank_you)
    if target:
        return redirect(target, code=303)
    return kept_page("public/check_inbox.html", None, per_visitor={"email": form.email.data})


@public.route("/subscribe/<slug>", methods=["GET", "POST"])
@limiter.limit(per_ip, methods=["POST"])
@limiter.limit(per_address, key_func=address_key, methods=["POST"])
def subscribe(slug: str) -> ResponseLike:
    """The signup form of one resource."""
    resource = public_resource(slug)
    if request.method != "POST":  # GET, HEAD: the empty form
        return _signup_page(SignupForm, resource, 200)
    form = SignupForm()
    if form.validate_on_submit():
        return _signup(form, [resource.slug], f"subscribe/{resource.slug}", resource.thank_you_url)
    return _signup_page(form, resource, 400)


@public.post("/subscribe/<slug>/embed")
@csrf.exempt
@limiter.limit(per_ip)
@limiter.limit(per_address, key_func=address_key)
def subscribe_embedded(slug: str) -> ResponseLike:
    """The target of the form embedded on another site (SPEC §2): no CSRF cookie can exist
    there, so the honeypot, the rate limits and double opt-in itself protect it."""
    resource = public_resource(slug)
    form = SignupForm(meta={"csrf": False})
    if form.validate():
        return _signup(form, [resource.slug], f"embed/{resource.slug}", resource.thank_you_url)
    # The corrections happen on optin's own page, whose form carries a CSRF token again.
    own_form = SignupForm(formdata=request.form)
    own_form.validate()
    return _signup_page(own_form, resource, 400)


def _signup_page(
    form: SignupForm | Callable[[], SignupForm], resource: Resource, status: int
) -> tuple[str, int]:
    """One resource's signup form, with the errors the form holds (an empty one: what makes
    it, see ``kept_page``)."""
    page = kept_page(
        "public/subscribe.html",
        resource.id,
        form=form,
        resource=resource,
        consent_text=subscriptions.consent_text_for(resource),
    )
    return page, status


@public.route("/subscribe", methods=["GET", "POST"])
@limiter.limit(per_ip, methods=["POST"])
@limiter.limit(per_address, key_func=address_key, methods=["POST"])
def subscribe_all() -> ResponseLike:
    """One form for every public resource, with a checkbox for each."""
    resources = queries.cached_public_resources()
    form = SignupAllForm()
    form.resources.choices = options([(r.slug, r.name) for r in resources])
    if form.validate_on_submit():
        return _signup(form, list(form.resources.data or []), "subscribe", None)
    status = 400 if request.method == "POST" else 200
    page = kept_page(
        "public/subscribe_all.html",
        tuple(resource.id for resource in resources),
        form=form,
        resources=resources,
        consent_text=subscriptions.consent_text_for(None),
    )
    return page, status


# --- Confirmation -------------------------------------------------------------------------------


@public.get("/confirm/<token>")
def confirm_page(token: str) -> ResponseLike:
    """The page behind a confirmation link: what will be confirmed, and the button. Mail
    scanners open links, so this GET changes nothing."""
    target = read_token(Purpose.CONFIRM, token)
    profile, held = subscriptions.confirmation_of_link(target)
    use_locale(profile.locale)
    pending = subscriptions.pending_confirmation(target, profile, held)
    key = tuple(resource.id for resource in pending)
    return kept_page("public/confirm.html", key, form=ButtonForm, resources=pending)


@public.post("/confirm/<token>")
@limiter.limit(per_ip)
def confirm(token: str) -> ResponseLike:
    """Confirm (rule 5). Twice is the same as once. The service opens the link in its own
    transaction; the view reads the profile only to answer a refused form in its language."""
    target = read_token(Purpose.CONFIRM, token)
    if not ButtonForm().validate_on_submit():
        _target, profile = opened(Purpose.CONFIRM, token)
        use_locale(profile.locale)
        return error_page(400)
    try:
        result = subscriptions.confirm_signup(target, actor=visitor())
    except TransitionRefused:
        use_locale(subscriptions.locale_of(target.profile_id))
        raise GoneProfile() from None
    use_locale(result.locale)
    destination = trusted_redirect(result.thank_you_url)
    if destination:
        return redirect(destination, code=303)
    key = (result.already, tuple(resource.id for resource in result.confirmed))
    return kept_page("public/confirmed.html", key, result=result)


@public.post("/confirm/<token>/resend")
@limiter.limit(per_ip)
def resend_confirmation(token: str) -> ResponseLike:
    """From the expired-link page: a fresh confirmation link, if there is still a signup."""
    if not ButtonForm().validate_on_submit():
        return error_page(400)
    try:
        read_token(Purpose.CONFIRM, token)
    except TokenExpired as expired:
        subscriptions.resend_confirmation(expired.target)
        return render_template("public/check_inbox.html", email=None)
    return error_page(400, _("This link still works"), _("Go back and press the button."))


# --- Unsubscribe ----------------------------------------------------------------------------------


@public.get("/unsubscribe/<token>")
def unsubscribe_page(token: str) -> ResponseLike:
    """The page behind an unsubscribe link: the choice of this resource or everything, and the
    button. A GET changes nothing."""
    target = read_token(Purpose.UNSUBSCRIBE, token)
    profile, resource = subscriptions.link_scope(target)
    use_locale(profile.locale)

    def empty_form() -> UnsubscribeForm:
        form = UnsubscribeForm()
        if resource is not None:
            form.scope.choices = options(
                [
                    ("resource", _("%(name)s only", name=resource.name)),
                    ("everything", _("Everything")),
                ]
            )
        return form

    key = resource.id if resource is not None else None
    return kept_page("public/unsubscribe.html", key, form=empty_form, resource=resource)


@public.post("/unsubscribe/<token>")
@csrf.exempt  # checked below, except for RFC 8058's one-click POST
def unsubscribe(token: str) -> ResponseLike:
    """Unsubscribe. A mail provider's one-click POST (body ``List-Unsubscribe=One-Click``, no
    cookie, no CSRF token) is answered 200 at once, with no redirect."""
    target = read_token(Purpose.UNSUBSCRIBE, token)
    if request.form.get("List-Unsubscribe") == "One-Click":
        # An erased profile has nothing left to unsubscribe: the answer is the same.
        with suppress(GoneProfile):
            subscriptions.unsubscribe_by_link(
                target, everything=False, cause=Cause.ONE_CLICK, actor=visitor()
            )
        return Response("You are unsubscribed.\n", 200, mimetype="text/plain")
    csrf.protect()
    form = UnsubscribeForm()
    if not form.validate():
        return error_page(400)
    done = subscriptions.unsubscribe_by_link(
        target,
        everything=form.scope.data == "everything",
        cause=Cause.UNSUBSCRIBE_LINK,
        actor=visitor(),
    )
    use_locale(done.locale)
    # A link from before link keys names the profile by id alone: it may unsubscribe, and opens
    # nothing more; the person asks for a preference link by email instead.
    preferences = (
        url_for("public.request_preferences_link")
        if target.legacy
        else url_for(
            "public.preferences",
            token=make_token(Purpose.PREFERENCES, LinkTarget(done.profile_id, done.link_key)),
        )
    )
    return kept_page(
        "public/unsubscribed.html",
        done.resource.id if done.resource else None,
        per_visitor={"preferences_url": preferences},
        resource=done.resource,
    )


# --- Preferences ----------------------------------------------------------------------------------


def _render_preferences(
    token: str,
    profile_id: int,
    form: PreferencesForm | None = None,
    status: int = 200,
    *,
    notice: str | None = None,
) -> tuple[str, int]:
    prefs = preference_center.preferences_of(profile_id)
    use_locale(prefs.profile.locale)
    if form is None:
        form = PreferencesForm(
            name=prefs.profile.name,
            locale=prefs.profile.locale or "",
            resources=[row.resource.slug for row in prefs.rows if row.active],
        )
    form.resources.choices = options([(row.resource.slug, row.resource.name) for row in prefs.rows])
    page = render_template(
        "public/preferences.html",
        token=token,
        prefs=prefs,
        form=form,
        pause_form=PauseForm(),
        everything_form=ButtonForm(),
        data_form=ButtonForm(),
        notice=notice,
    )
    return page, status


@public.get("/preferences/<token>")
def preferences(token: str) -> ResponseLike:
    """The preference center."""
    _target, profile = opened(Purpose.PREFERENCES, token)
    return _render_preferences(token, profile.id)


@public.post("/preferences/<token>")
def save_preferences(token: str) -> ResponseLike:
    """Save name, language and what the customer receives."""
    _target, profile = opened(Purpose.PREFERENCES, token)
    use_locale(profile.locale)
    prefs = preference_center.preferences_of(profile.id)
    form = PreferencesForm()
    form.resources.choices = options([(row.resource.slug, row.resource.name) for row in prefs.rows])
    if not form.validate_on_submit():
        return _render_preferences(token, profile.id, form, 400)
    preference_center.update_preferences(
        profile.id,
        wanted=set(form.resources.data or []),
        name=(form.name.data or "").strip() or None,
        locale=form.locale.data or None,
        actor=visitor(),
    )
    use_locale(form.locale.data or None)
    return _render_preferences(token, profile.id, notice=_("Your preferences are saved."))


@public.post("/preferences/<token>/pause")
def pause(token: str) -> ResponseLike:
    """Pause every subscription for 14, 30, 60 or 90 days."""
    _target, profile = opened(Purpose.PREFERENCES, token)
    use_locale(profile.locale)
    form = PauseForm()
    if not form.validate_on_submit():
        return _render_preferences(token, profile.id, status=400)
    until = preference_center.pause_all(profile.id, int(form.days.data), actor=visitor())
    notice = _(
        "Paused until %(date)s. Mail starts again by itself after that.",
        date=format_date(until, "long"),
    )
    return _render_preferences(token, profile.id, notice=notice)


@public.post("/preferences/<token>/everything")
def unsubscribe_everything(token: str) -> ResponseLike:
    """Unsubscribe from everything: the global status (SPEC §1 rule 2)."""
    _target, profile = opened(Purpose.PREFERENCES, token)
    use_locale(profile.locale)
    if not ButtonForm().validate_on_submit():
        return error_page(400)
    preference_center.unsubscribe_everything(profile.id, actor=visitor())
    notice = _("You are unsubscribed from everything. Nothing more will be sent to you.")
    return _render_preferences(token, profile.id, notice=notice)


@public.post("/preferences/<token>/data-link")
@limiter.limit(per_ip)
def request_data_link(token: str) -> ResponseLike:
    """ "Email me a link to download or erase my data". Preference and unsubscribe links travel
    in headers that mail providers and forwarded mail see, so the data itself needs a fresh link
    from the mailbox (tokens.Purpose.DATA). The same answer every time: the service caps the
    emails per address (CONFIRMATIONS_PER_ADDRESS_PER_DAY), the limiter the requests per IP."""
    _target, profile = opened(Purpose.PREFERENCES, token)
    use_locale(profile.locale)
    if not ButtonForm().validate_on_submit():
        return error_page(400)
    preference_center.request_data_link(profile.id)
    notice = _(
        "We sent a link to %(email)s. It opens your data for the next %(minutes)s minutes.",
        email=profile.email,
        minutes=current_app.config["DATA_LINK_MAX_AGE"] // 60,
    )
    return _render_preferences(token, profile.id, notice=notice)


# --- Your data (the short-lived link from the email) ----------------------------------------------


def _render_data_page(
    token: str, profile: Profile, erase_form: EraseForm | None = None, status: int = 200
) -> tuple[str, int]:
    use_locale(profile.locale)
    page = render_template(
        "public/data.html", token=token, profile=profile, erase_form=erase_form or EraseForm()
    )
    return page, status


@public.get("/data/<token>")
def data_page(token: str) -> ResponseLike:
    """The page behind an emailed data link: download, or erase. A GET changes nothing."""
    _target, profile = opened(Purpose.DATA, token)
    return _render_data_page(token, profile)


@public.get("/data/<token>/data.json")
def download_data(token: str) -> ResponseLike:
    """Download my data: everything optin holds about the profile, as JSON."""
    _target, profile = opened(Purpose.DATA, token)
    response = jsonify(preference_center.export_data(profile.id))
    response.headers["Content-Disposition"] = "attachment; filename=my-subscription-data.json"
    # Personal data: no browser or proxy keeps a copy.
    response.headers["Cache-Control"] = "no-store"
    return response


@public.post("/data/<token>/erase")
def erase(token: str) -> ResponseLike:
    """Erase my data: the profile goes, only a hash of the address stays suppressed."""
    _target, profile = opened(Purpose.DATA, token)
    form = EraseForm()
    if not form.validate_on_submit():
        return _render_data_page(token, profile, erase_form=form, status=400)
    use_locale(profile.locale)
    preference_center.erase(profile.id, actor=visitor())
    return render_template("public/erased.html")


@public.post("/data/<token>/resend")
@limiter.limit(per_ip)
def resend_data_link(token: str) -> ResponseLike:
    """From the expired-link page: a fresh data link, sent to the address (rate-capped)."""
    if not ButtonForm().validate_on_submit():
        return error_page(400)
    try:
        read_token(Purpose.DATA, token)
    except TokenExpired as expired:
        with suppress(GoneProfile):
            profile = subscriptions.profile_of_link(expired.target)
            preference_center.request_data_link(profile.id)
        return render_template("public/check_inbox.html", email=None)
    return error_page(400, _("This link still works"), _("Go back and press the button."))


@public.route("/preferences", methods=["GET", "POST"])
@limiter.limit(per_ip, methods=["POST"])
@limiter.limit(per_address, key_func=address_key, methods=["POST"])
def request_preferences_link() -> ResponseLike:
    """Enter an address, receive a preference link; the same answer whether it is known or not."""
    if request.method != "POST":  # GET, HEAD: the empty form
        return kept_page("public/preferences_request.html", None, form=PreferencesRequestForm)
    form = PreferencesRequestForm()
    if form.validate_on_submit():
        preference_center.request_preferences_link(form.email.data or "")  # the form is valid
        sent = {"email": form.email.data}
        return kept_page("public/preferences_sent.html", None, per_visitor=sent)
    return kept_page("public/preferences_request.html", None, form=form), 400
