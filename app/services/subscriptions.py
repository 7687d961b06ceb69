"""What end customers do on the public pages (SPEC §2): sign up, confirm, unsubscribe by a link.
Each function is one transaction in which the status changes (through the rules of status.py) and
the emails they cause are written together. The preference center and the data link are
services/preferences.py.

A link opens a profile only with the profile's own link key (``profile_of_link``), and a
confirmation link confirms only the signup request whose nonce it carries (``_to_confirm``).
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from flask import current_app
from sqlalchemy import bindparam, insert, update

from app import outbox, queries
from app.addresses import normalize_email
from app.database import transactional, utcnow
from app.extensions import db
from app.links import confirm_url
from app.models import (
    ConsentRecord,
    ConsentText,
    Profile,
    Resource,
    Subscription,
)
from app.queries import status_rows
from app.queries.status_rows import ProfileRow, SubscriptionRow
from app.services import statuses
from app.services.errors import NotFound, UnknownResource
from app.services.statuses import Actor, Result, parse_channel
from app.status import (
    Cause,
    Channel,
    Confirm,
    SetStatus,
    Signup,
    State,
    Status,
    Unsubscribe,
    effective,
)
from app.tokens import LinkTarget, new_nonce, opens

# A link's profile: an entity for the pages, a locked row for the services that change it.
OpenedProfile = TypeVar("OpenedProfile", Profile, ProfileRow)

GENERAL_CONSENT_TEXT = (
    "Yes, send me the newsletters I ticked. I can unsubscribe at any time with the link in every "
    "message."
)


class GoneProfile(NotFound):
    """The link points at a profile that was erased, or a signup that expired (rule 8)."""

    def __init__(self) -> None:
        super().__init__("this link points at something that no longer exists")


@dataclass(frozen=True)
class ConfirmResult:
    confirmed: list[Resource]
    already: bool
    thank_you_url: str | None = None
    # The profile's language, for the page that answers (the view reads nothing itself).
    locale: str | None = None


@dataclass(frozen=True)
class LinkUnsubscribe:
    """What an unsubscribe link did, with what the page that answers needs of the profile, so
    that the view reads nothing after the commit."""

    result: Result
    profile_id: int
    link_key: str
    locale: str | None
    # The resource unsubscribed from; None when it was everything (the global status).
    resource: Resource | None


def _consent_text(resource_id: int | None) -> ConsentText:
    """The consent text a form shows now; the all-resources form gets a general one on first use."""
    text = queries.cached_consent_text(resource_id)
    if text is None:
        text = ConsentText(
            resource_id=resource_id,
            version=1,
            text=GENERAL_CONSENT_TEXT,
        )
        db.session.add(text)
        db.session.flush()
    return text


def consent_text_for(resource: Resource | None) -> str:
    """The words to print under a signup form."""
    text = queries.cached_consent_text(resource.id if resource else None)
    return text.text if text else GENERAL_CONSENT_TEXT


def _resources(slugs: Sequence[str], channel: Channel) -> list[Resource]:
    found = []
    for slug in dict.fromkeys(slugs):
        found.append(statuses.resource_for(slug, channel))
    if not found:
        raise UnknownResource("")
    return found


def _confirmation_allowed(address: str, now: datetime) -> bool:
    limit: int = current_app.config["CONFIRMATIONS_PER_ADDRESS_PER_DAY"]
    sent = queries.emails_sent_to_since(address, "confirm", now - timedelta(days=1))
    return sent < limit


def queue_confirmation(
    profile: Profile | ProfileRow,
    resources: list[Resource],
    channel: Channel,
    form: str,
    now: datetime,
) -> None:
    """The confirmation email for these subscriptions, in the caller's transaction: a signup
    here, or a resource newly ticked on the preference page (services/preferences.py)."""
    if not _confirmation_allowed(profile.email, now):
        return  # rule 4: at most a few a day; the page says the same either way
    single = resources[0] if len(resources) == 1 else None
    consent = _consent_text(single.id if single else None)
    # This request's link confirms these subscriptions only, and only until they change; an
    # earlier request's link stops working (the newest email is the one that counts).
    nonce = new_nonce()
    rows: dict[str, Any] = {
        "row_profile_id": profile.id,
        "row_channel": channel.value,
        "confirm_nonce": nonce,
        "updated_at": utcnow(),
    }
    if single:
        db.session.execute(_SET_CONFIRM_NONCE_OF_ONE, rows | {"row_resource_id": single.id})
    else:
        rows["row_resource_ids"] = [resource.id for resource in resources]
        db.session.execute(_SET_CONFIRM_NONCE, rows)
    target = LinkTarget(
        profile.id,
        profile.link_key,
        resource_id=single.id if single else None,
        channel=channel.value,
        form=form,
        consent_text_id=consent.id,
        nonce=nonce,
    )
    outbox.enqueue(
        profile.email,
        "confirm",
        profile_id=profile.id,
        resource_id=single.id if single else None,
        confirm_url=confirm_url(target),
        resource_names=[r.name for r in resources],
        # No name: anyone may ask for this email to any address, and the name is theirs to type.
        locale=profile.locale,
    )


def queue_welcome(
    profile: Profile | ProfileRow, resource: Resource, *, by_name: bool = True
) -> None:
    """The welcome after a subscription began. ``by_name`` False when nobody proved they hold
    the mailbox (a single-opt-in signup from a form): the name was typed by whoever asked."""
    outbox.enqueue(
        profile.email,
        "welcome",
        profile_id=profile.id,
        resource_id=resource.id,
        resource_name=resource.name,
        resource_description=resource.description,
        name=profile.name if by_name else None,
        locale=profile.locale,
    )


def record_consent(
    profile_id: int,
    resource_id: int,
    channel: Channel,
    *,
    consent_text_id: int | None,
    confirmed_at: datetime,
    ip: str | None,
    user_agent: str | None,
    form: str | None,
    subscription_id: int | None = None,
) -> None:
    """Store the proof of consent with the subscription just confirmed (rule 7), in the
    transaction of the confirmation (``subscription_id``: that row's, when the caller has it)."""
    if subscription_id is None:
        subscription = queries.subscription_of(profile_id, resource_id, channel.value)
        if subscription is None:
            raise NotFound("no subscription to record the consent of")
        subscription_id = subscription.id
    db.session.execute(
        _INSERT_CONSENT,
        {
            "subscription_id": subscription_id,
            "consent_text_id": consent_text_id,
            "confirmed_at": confirmed_at,
            "ip": ip,
            "user_agent": user_agent,
            "form": form,
        },
    )


# Built once: the statements of a signup and a confirmation (see queries/status_rows.py). The
# nonce is set on the table's rows, not through entities (the ORM's UPDATE searches the session
# for them): an entity of these rows that the session holds (the preference page loads them)
# keeps its old nonce, which nothing reads before the commit expires it.
_subscriptions = Subscription.__table__
_SET_CONFIRM_NONCE = update(_subscriptions).where(
    _subscriptions.c.profile_id == bindparam("row_profile_id"),
    _subscriptions.c.resource_id.in_(bindparam("row_resource_ids", expanding=True)),
    _subscriptions.c.channel == bindparam("row_channel"),
)
# The usual signup names one resource: an equality binds its value, where an expanding IN is
# rendered anew on every execution.
_SET_CONFIRM_NONCE_OF_ONE = update(_subscriptions).where(
    _subscriptions.c.profile_id == bindparam("row_profile_id"),
    _subscriptions.c.resource_id == bindparam("row_resource_id"),
    _subscriptions.c.channel == bindparam("row_channel"),
)
_INSERT_CONSENT = insert(ConsentRecord.__table__)


@transactional
def request_signup(
    email: str,
    slugs: Sequence[str],
    *,
    channel: str = "email",
    name: str | None = None,
    locale: str | None = None,
    form: str,
    actor: Actor,
    now: datetime | None = None,
) -> list[Result]:
    """A signup from a form: rule 4 for each resource, then one confirmation email for all the
    resources that need a click, and a welcome for each single-opt-in one that subscribed.

    The caller shows the same page whatever happened, so an address cannot be probed."""
    address = normalize_email(email)
    parsed = parse_channel(channel)
    chosen = _resources(slugs, parsed)
    moment = now or utcnow()
    results = [
        statuses.change_status(
            address,
            Signup(double_opt_in=resource.double_opt_in),
            resource,
            parsed,
            actor=actor,
            name=name,
            locale=locale,
            now=moment,
        )
        for resource in chosen
    ]
    profile = results[0].profile
    if profile is None:
        raise NotFound("no profile for this signup")
    pairs = list(zip(chosen, results, strict=True))
    needing = [resource for resource, result in pairs if result.outcome.send_confirmation]
    if needing:
        queue_confirmation(profile, needing, parsed, form, moment)
    for resource, result in pairs:
        if result.outcome.newly_subscribed:
            queue_welcome(profile, resource, by_name=False)
    return results


def api_signup(
    email: str,
    slug: str,
    *,
    channel: Channel,
    name: str | None,
    actor: Actor,
) -> bool:
    """A signup through the API without proof of consent: the same as a form's, so a
    double-opt-in resource sends its confirmation email. True when one was queued."""
    results = request_signup(
        email, [slug], channel=channel.value, name=name, form="api", actor=actor
    )
    return results[0].outcome.send_confirmation


@dataclass(frozen=True)
class ConsentProof:
    """Consent the sending platform collected itself, given through the API."""

    confirmed_at: datetime
    ip: str | None = None
    user_agent: str | None = None
    form: str = "api"


@transactional
def subscription_with_consent(
    email: str, slug: str, *, channel: Channel, proof: ConsentProof, actor: Actor
) -> Result:
    """`subscribed` through the API with proof of consent, a confirmed opt-in (rule 5): it
    lifts `unsubscribed`, `complainer` and `hardbounced` and the address's suppression as a
    confirmation does (status.py), the proof is stored whenever it changed something, and the
    welcome email is queued as after a confirmation."""
    address = normalize_email(email)
    result = statuses.change_status(
        address,
        SetStatus(Status.SUBSCRIBED, Cause.API, consent_proof=True),
        slug,
        channel,
        actor=actor,
    )
    profile = queries.profile_by_email(address)
    resource = queries.resource_by_slug(slug)
    if profile is None or resource is None:
        raise NotFound("no such profile or resource")
    # The proof goes with every change it caused: a lifted global stop or suppression is
    # consent as much as a subscription that became subscribed.
    if result.changed:
        record_consent(
            profile.id,
            resource.id,
            channel,
            consent_text_id=None,
            confirmed_at=proof.confirmed_at,
            ip=proof.ip,
            user_agent=proof.user_agent,
            form=proof.form,
        )
    if result.outcome.newly_subscribed:
        queue_welcome(profile, resource)
    return result


def profile_of_link(target: LinkTarget) -> Profile:
    """The profile a link opens: the one with the link's id AND its link key. A link of an
    erased profile, or one whose key is not this profile's, opens nothing (GoneProfile), even
    if a new profile were ever to get the old id."""
    return _opened_by(target, queries.profile_by_id(target.profile_id))


def profile_row_of_link(target: LinkTarget) -> ProfileRow:
    """The profile a link opens (as ``profile_of_link``), as a row: what the pages of the
    emailed links show and check, without an entity's load and identity map."""
    return _opened_by(target, status_rows.profile_row_by_id(target.profile_id))


def confirmation_of_link(target: LinkTarget) -> tuple[ProfileRow, list[SubscriptionRow]]:
    """The profile a confirmation link opens (as ``profile_of_link``), as a row, and its
    subscriptions, read together for the page that asks for the click (not locked)."""
    profile, held = status_rows.profile_and_subscription_rows(target.profile_id)
    return _opened_by(target, profile), held


def locked_profile_of_link(target: LinkTarget) -> ProfileRow:
    """The profile a link opens (as ``profile_of_link``), its row locked until the commit, for
    the service that changes it (``change_status(locked=...)``)."""
    return _opened_by(target, status_rows.locked_profile_row_by_id(target.profile_id))


def _opened_by(target: LinkTarget, profile: OpenedProfile | None) -> OpenedProfile:
    if profile is None:
        raise GoneProfile()
    if target.legacy:
        # Only unsubscribe links are read without a key, and only profiles that existed before
        # keys were given out accept them (ids are never reused since).
        if not profile.legacy_links:
            raise GoneProfile()
        return profile
    if not opens(target, profile.link_key):
        raise GoneProfile()
    return profile


def locale_of(profile_id: int) -> str | None:
    """The language a profile chose (or was signed up in), for the pages its links open."""
    profile = queries.profile_by_id(profile_id)
    return profile.locale if profile else None


def pending_confirmation(
    target: LinkTarget, profile: ProfileRow, held: list[SubscriptionRow]
) -> list[Resource]:
    """What a confirmation link would confirm, for the page that asks for the click (empty: it
    was confirmed already). A link that can confirm nothing any more is gone. ``profile`` is
    the one the link opened and ``held`` its subscriptions (``confirmation_of_link``)."""
    pending = [resource for resource, _ in _to_confirm(held, target)]
    if not pending and not _already_confirmed(profile.state, held, target, utcnow()):
        raise GoneProfile()
    return pending


def _nonce_matches(stored: str | None, given: str | None) -> bool:
    return (
        stored is not None
        and given is not None
        and hmac.compare_digest(stored.encode("ascii"), given.encode("ascii"))
    )


def _to_confirm(
    held: list[SubscriptionRow], target: LinkTarget
) -> list[tuple[Resource, SubscriptionRow]]:
    """The subscriptions (of those the profile ``held``) that the link's signup request is
    still waiting on: those that carry its nonce. Any change to a subscription since (an
    unsubscribe, a newer request, its deletion and a new signup) took the nonce away, so an old
    link confirms nothing (rule 5 needs the consent of this request, not of some earlier one)."""
    pending = []
    for subscription in held:
        if subscription.channel != target.channel:
            continue
        if target.resource_id is not None and subscription.resource_id != target.resource_id:
            continue
        if not _nonce_matches(subscription.confirm_nonce, target.nonce):
            continue
        # The process's copy of the resource: read for its name and id only.
        resource = queries.cached_resource_by_id(subscription.resource_id)
        if resource is None:
            raise NotFound("no resource for this subscription")
        pending.append((resource, subscription))
    return pending


def _already_confirmed(
    global_state: State, held: list[SubscriptionRow], target: LinkTarget, now: datetime
) -> bool:
    """Whether a link with nothing left to confirm belongs to a signup that is in force (the
    second click of a double-click: "already confirmed", rule 9), rather than to one that was
    undone since (then the link is gone)."""
    if not _subscribed_at(global_state, now):
        return False
    return any(
        subscription.channel == target.channel
        and target.resource_id in (None, subscription.resource_id)
        and _subscribed_at(subscription.state, now)
        for subscription in held
    )


def _subscribed_at(state: State, now: datetime) -> bool:
    current = effective(state, now)
    return current is not None and current.status is Status.SUBSCRIBED


@transactional
def confirm_signup(
    target: LinkTarget, *, actor: Actor, now: datetime | None = None
) -> ConfirmResult:
    """Rule 5 for every subscription the link names, with the proof of consent and a welcome
    email for each. Confirming twice changes nothing the second time (rule 9)."""
    moment = now or utcnow()
    profile = locked_profile_of_link(target)
    held = status_rows.subscription_rows_of(profile.id)
    pending = _to_confirm(held, target)
    if not pending:
        if _already_confirmed(profile.state, held, target, moment):
            return ConfirmResult([], already=True, locale=profile.locale)
        # Expired (rule 8), or undone since the link was sent: it confirms nothing.
        raise GoneProfile()
    channel = Channel(target.channel)
    confirmed: list[Resource] = []
    for resource, subscription in pending:
        result = statuses.change_status(
            profile.email,
            Confirm(),
            resource,
            channel,
            actor=actor,
            now=moment,
            locked=profile,
            locked_subscription=subscription,
        )
        # The profile as this confirmation left it, for the next one (its global status).
        profile = result.profile or profile
        if result.outcome.newly_subscribed:
            record_consent(
                profile.id,
                resource.id,
                channel,
                consent_text_id=target.consent_text_id,
                confirmed_at=moment,
                ip=actor.ip,
                user_agent=actor.user_agent,
                form=target.form,
                subscription_id=result.subscription.id if result.subscription else None,
            )
            queue_welcome(profile, resource)
            confirmed.append(resource)
    thank_you = confirmed[0].thank_you_url if len(confirmed) == 1 else None
    return ConfirmResult(
        confirmed, already=not confirmed, thank_you_url=thank_you, locale=profile.locale
    )


@transactional
def resend_confirmation(target: LinkTarget, *, now: datetime | None = None) -> None:
    """A fresh link for an expired one, if there is still something to confirm (rate-capped)."""
    moment = now or utcnow()
    profile = queries.profile_by_id(target.profile_id)
    if profile is None or not opens(target, profile.link_key):
        return
    pending = [
        resource
        for resource, _ in _to_confirm(status_rows.subscription_rows_of(profile.id), target)
    ]
    if pending:
        form = target.form or "resend"
        queue_confirmation(profile, pending, Channel(target.channel), form, moment)


def link_scope(target: LinkTarget) -> tuple[ProfileRow, Resource | None]:
    """The profile and resource an unsubscribe or preference link is about."""
    return profile_row_of_link(target), _link_resource(target)


def _link_resource(target: LinkTarget) -> Resource | None:
    return queries.cached_resource_by_id(target.resource_id) if target.resource_id else None


@transactional
def unsubscribe_by_link(
    target: LinkTarget, *, everything: bool, cause: Cause, actor: Actor
) -> LinkUnsubscribe:
    """Rule 2: the link's resource only, or the global status when the link names none or the
    customer chose "everything". Repeating it changes nothing."""
    profile = locked_profile_of_link(target)
    scope = None if everything else _link_resource(target)
    result = statuses.change_status(
        profile.email,
        Unsubscribe(cause),
        scope,
        Channel(target.channel),
        actor=actor,
        locked=profile,
    )
    return LinkUnsubscribe(result, profile.id, profile.link_key, profile.locale, scope)
