"""No constant secret (issue 9, item 2): without SECRET_KEY a random key is generated once into
the instance folder, readable by its owner only, and every app on that folder uses it."""

from __future__ import annotations

import logging
import multiprocessing
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from app import create_app
from app.security import GENERATED_KEY_FILE, instance_secret_key
from app.tokens import LinkTarget, Purpose, make_token, read_token

PROJECT = Path(__file__).resolve().parent.parent
# Spelled in two parts, so that this file is not itself a place where the old constant is.
OLD_CONSTANT = "dev-only-" + "change-me"


@pytest.fixture
def no_secret_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty instance folder and no SECRET_KEY in the environment, as on a first start."""
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.setenv("OPTIN_INSTANCE_PATH", str(tmp_path))
    # Alembic's logging.fileConfig (tests/test_migrations.py runs it in this process) disables
    # every logger that exists by then; a fresh process has it enabled.
    monkeypatch.setattr(logging.getLogger("app.security"), "disabled", False)
    return tmp_path


def test_starting_without_a_secret_key_generates_one_readable_by_the_owner_only(
    no_secret_key: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        app = create_app({"TESTING": True})
    key_file = no_secret_key / GENERATED_KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert app.config["SECRET_KEY"] == key_file.read_text().strip()
    assert len(app.config["SECRET_KEY"]) >= 64
    said = caplog.text
    assert str(key_file) in said and "same key" in said
    # No temporary file is left beside it.
    assert [path.name for path in no_secret_key.iterdir() if "secret" in path.name] == [
        GENERATED_KEY_FILE
    ]


def test_a_second_app_on_the_same_instance_folder_gets_the_same_key_and_says_nothing(
    no_secret_key: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = create_app({"TESTING": True})
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="app.security"):
        second = create_app({"TESTING": True})
    assert second.config["SECRET_KEY"] == first.config["SECRET_KEY"]
    assert "generated" not in caplog.text


def test_links_and_sessions_made_by_one_app_are_accepted_by_the_other(no_secret_key: Path) -> None:
    first = create_app({"TESTING": True})
    second = create_app({"TESTING": True})
    with first.app_context():
        token = make_token(Purpose.UNSUBSCRIBE, LinkTarget(7, "a" * 32, resource_id=3))
    with second.app_context():
        assert read_token(Purpose.UNSUBSCRIBE, token) == LinkTarget(7, "a" * 32, resource_id=3)

    browser = first.test_client()
    with browser.session_transaction() as session:
        session["seen"] = "by the first app"
    cookie = browser.get_cookie("session")
    assert cookie is not None
    other = second.test_client()
    other.set_cookie("session", cookie.value)
    with other.session_transaction() as session:
        assert session.get("seen") == "by the first app"


def test_a_set_secret_key_is_used_and_nothing_is_written(no_secret_key: Path) -> None:
    app = create_app({"TESTING": True, "SECRET_KEY": "set by the operator"})
    assert app.config["SECRET_KEY"] == "set by the operator"
    assert not (no_secret_key / GENERATED_KEY_FILE).exists()


def _generate_at(folder: str, start: float) -> str:
    time.sleep(max(0.0, start - time.time()))
    return instance_secret_key(folder)


@pytest.mark.slow
def test_processes_starting_together_agree_on_one_key(tmp_path: Path) -> None:
    start = time.time() + 2  # every process is up and waiting by then
    context = multiprocessing.get_context("spawn")
    with context.Pool(6) as pool:
        keys = pool.starmap(_generate_at, [(str(tmp_path), start)] * 6)
    assert len(set(keys)) == 1
    assert (tmp_path / GENERATED_KEY_FILE).read_text().strip() == keys[0]


def test_the_old_constant_secret_is_nowhere_in_the_project() -> None:
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    found = [
        name
        for name in files
        if os.path.isfile(PROJECT / name) and OLD_CONSTANT.encode() in (PROJECT / name).read_bytes()
    ]
    assert found == []
