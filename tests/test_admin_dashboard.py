"""The admin dashboard: the counts of what is in optin now and the daily charts of the last 30
days, drawn as SVG on the server with a table beside them."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from flask.testing import FlaskClient

from app import queries
from app.models import Resource
from app.services.statuses import Actor
from tests import factories


def dashboard(client: FlaskClient) -> str:
    answer = client.get("/admin/dashboard")
    assert answer.status_code == 200
    return answer.get_data(as_text=True)


def chart_rows(html: str) -> dict[str, list[int]]:
    """The table beside the charts: day -> counts in the order of the columns."""
    table = html.split("The charts as a table")[1]
    return {
        day: [int(cell) for cell in re.findall(r'<td class="number">(\d+)</td>', cells)]
        for day, cells in re.findall(r'<th scope="row">(\d{4}-\d\d-\d\d)</th>(.*?)</tr>', table)
    }


def test_the_admin_front_page_is_the_dashboard(admin_client: FlaskClient) -> None:
    answer = admin_client.get("/admin/")
    assert answer.status_code == 302
    assert answer.headers["Location"] == "/admin/dashboard"


def test_the_dashboard_counts_profiles_subscriptions_and_suppressions(
    admin_client: FlaskClient, newsletter: Resource, brand: Resource
) -> None:
    for name in ("a", "b", "c"):
        factories.signup(f"{name}@example.com", "newsletter")
    factories.confirm("a@example.com", "newsletter")
    factories.signup("a@example.com", "brand", channel="sms")
    factories.hard_bounce("c@example.com")
    factories.hard_bounce("stranger@example.com")
    html = dashboard(admin_client)
    profiles = html.split("Profiles by global status")[1].split("</table>")[0]
    cells = re.findall(r'<td class="number">([\d,]+)</td>', profiles)
    # subscribed, unsubscribed, complainer, hardbounced, unconfirmed, suspended, invalid, all
    assert cells == ["1", "0", "0", "1", "1", "0", "0", "3"]
    assert "On the suppression list: <strong>2</strong>" in html
    by_resource = html.split("Subscriptions by resource and status")[1].split("</table>")[0]
    assert "The Newsletter" in by_resource and "Brand news" in by_resource and "sms" in by_resource
    assert sorted(queries.subscriptions_by_status()) == sorted(
        [
            (brand.id, "sms", "unconfirmed", 1),
            (newsletter.id, "email", "subscribed", 1),
            (newsletter.id, "email", "unconfirmed", 2),
        ]
    )


def test_the_charts_count_each_customer_action_once_per_day(
    admin_client: FlaskClient, newsletter: Resource
) -> None:
    now = datetime.now(UTC)
    yesterday = now - timedelta(days=1)
    old = now - timedelta(days=40)
    factories.signup("old@example.com", "newsletter", now=old)
    for name in ("a", "b"):
        factories.signup(f"{name}@example.com", "newsletter", now=yesterday)
        factories.confirm(f"{name}@example.com", "newsletter", now=yesterday)
    factories.unsubscribe("a@example.com", "newsletter", now=now)
    factories.complaint("b@example.com", "newsletter", now=now)
    factories.hard_bounce("a@example.com", now=now)
    # An admin's correction is not a customer's unsubscribe.
    factories.set_status("b@example.com", "unsubscribed", actor=Actor(name="admin"), now=now)
    rows = chart_rows(dashboard(admin_client))
    assert len(rows) == 30
    # signups, confirmations, unsubscribes, bounces, complaints
    assert rows[yesterday.date().isoformat()] == [2, 2, 0, 0, 0]
    assert rows[now.date().isoformat()] == [0, 0, 1, 1, 1]
    assert sum(sum(counts) for counts in rows.values()) == 7  # the 40-day-old signup is out


def test_the_charts_are_accessible_svg_without_script(
    admin_client: FlaskClient, newsletter: Resource
) -> None:
    factories.signup("a@example.com", "newsletter")
    html = dashboard(admin_client)
    assert html.count('<svg role="img"') == 5
    for title in ("Signups", "Confirmations", "Unsubscribes", "Hard bounces", "Complaints"):
        assert '<title id="chart-' in html and f">{title} per day</title>" in html
    assert "<script" not in html
    assert "http://" not in html.split("<body")[1].replace("http://www.w3.org/2000/svg", "")
    signups = html.split(">Signups per day</title>")[1].split("</svg>")[0]
    heights = [float(h) for h in re.findall(r'height="([\d.]+)" class="bar"', signups)]
    assert len(heights) == 30 and max(heights) > 0
