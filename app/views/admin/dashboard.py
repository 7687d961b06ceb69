"""The admin dashboard (``/admin/dashboard``): profiles by global status, each resource's
subscriptions by status, the size of the suppression list, and the last 30 days as charts.

The charts are SVG drawn on the server: no script, no network, and each has a title, a
description and the same numbers as a table for a screen reader.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from flask import render_template
from flask.typing import ResponseReturnValue

from app import queries
from app.database import utcnow
from app.status import Status
from app.views.admin import admin

CHART_DAYS = 30
CHART_WIDTH = 600
CHART_HEIGHT = 120
SERIES_LABELS = {
    "signups": "Signups",
    "confirmations": "Confirmations",
    "unsubscribes": "Unsubscribes",
    "bounces": "Hard bounces",
    "complaints": "Complaints",
}


@dataclass(frozen=True)
class Bar:
    """One day's bar: its count, and where it is drawn in the chart's coordinates."""

    day: date
    count: int
    x: float
    y: float
    height: float


@dataclass(frozen=True)
class Chart:
    """One daily series drawn as bars, with what a screen reader needs to read it."""

    key: str
    title: str
    total: int
    peak: int
    bars: list[Bar]
    bar_width: float
    width: int = CHART_WIDTH
    height: int = CHART_HEIGHT


def bar_chart(key: str, days: list[date], counts: dict[str, int]) -> Chart:
    """Bars of one series, one per day, scaled to the busiest day (an empty chart stays flat)."""
    values = [counts.get(day.isoformat(), 0) for day in days]
    peak = max(values, default=0)
    slot = CHART_WIDTH / len(days)
    bars = []
    for index, (day, value) in enumerate(zip(days, values, strict=True)):
        height = (CHART_HEIGHT - 4) * value / peak if peak else 0
        bars.append(Bar(day, value, index * slot + 1, CHART_HEIGHT - height, height))
    return Chart(key, SERIES_LABELS[key], sum(values), peak, bars, max(slot - 2, 1))


@admin.get("/dashboard")
def dashboard() -> ResponseReturnValue:
    """What is in optin now, and what happened in the last 30 days."""
    today = utcnow().date()
    days = [today - timedelta(days=offset) for offset in range(CHART_DAYS - 1, -1, -1)]
    series = queries.daily_event_counts(
        utcnow().replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=CHART_DAYS - 1)
    )
    charts = [bar_chart(key, days, series[key]) for key in SERIES_LABELS]
    by_status = queries.profiles_by_global_status()
    resources = {resource.id: resource for resource in queries.all_resources()}
    subscriptions: dict[tuple[int, str], dict[str, int]] = {}
    for resource_id, channel, status, total in queries.subscriptions_by_status():
        subscriptions.setdefault((resource_id, channel), {})[status] = total
    return render_template(
        "admin/dashboard.html",
        statuses=[status.value for status in Status],
        by_status=by_status,
        profile_total=sum(by_status.values()),
        resources=resources,
        subscriptions=sorted(
            subscriptions.items(),
            key=lambda item: (
                resources[item[0][0]].slug if item[0][0] in resources else "",
                item[0][1],
            ),
        ),
        suppressed=queries.suppression_count(),
        charts=charts,
        first_day=days[0],
        last_day=days[-1],
    )
