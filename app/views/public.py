"""Pages for end customers: the landing page at ``/`` (more come with the signup flow)."""

from __future__ import annotations

from flask import Blueprint, render_template

from app import queries

public = Blueprint("public", __name__)


@public.get("/")
def index() -> str:
    """The landing page: every public resource a visitor can subscribe to."""
    return render_template("public/index.html", resources=queries.public_resources())


@public.get("/healthz")
def health() -> dict[str, str]:
    """For load balancers and the benchmark harness: the app is up and answers."""
    return {"status": "ok"}
