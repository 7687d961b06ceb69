"""Settings come from the defaults, instance/config.py and environment variables of the same
name, the extensions' own included (SPEC §5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app import create_app
from app.config import DEFAULTS, database_uri, from_environment


def test_every_setting_reads_its_environment_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.setenv("OPTIN_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("MAIL_PORT", "2525")
    monkeypatch.setenv("MAIL_USE_TLS", "true")
    monkeypatch.setenv("MAIL_DEFAULT_SENDER", "News <news@example.org>")
    monkeypatch.setenv("RATELIMIT_STORAGE_URI", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("RATELIMIT_DEFAULT", "100/hour")
    monkeypatch.setenv("CONFIRM_MAX_AGE", "3600")
    monkeypatch.setenv("TRUSTED_REDIRECT_HOSTS", "example.org, www.example.org")
    monkeypatch.setenv("BASE_URL", "https://news.example.org")
    app = create_app()
    assert app.config["MAIL_PORT"] == 2525
    assert app.config["MAIL_USE_TLS"] is True
    assert app.config["MAIL_DEFAULT_SENDER"] == "News <news@example.org>"
    assert app.config["RATELIMIT_STORAGE_URI"] == "redis://127.0.0.1:6379/0"
    assert app.config["RATELIMIT_DEFAULT"] == "100/hour"
    assert app.config["CONFIRM_MAX_AGE"] == 3600
    assert app.config["TRUSTED_REDIRECT_HOSTS"] == ["example.org", "www.example.org"]
    assert app.config["BASE_URL"] == "https://news.example.org"


def test_with_nothing_set_it_uses_sqlite_in_the_instance_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("OPTIN_INSTANCE_PATH", str(tmp_path))
    app = create_app()
    assert app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path}/optin.sqlite3"
    assert app.config["MAIL_BACKEND"] == "console"


def test_instance_config_file_is_read_and_the_environment_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    (tmp_path / "config.py").write_text(
        "ORGANIZATION_ADDRESS = 'From the file'\nUNCONFIRMED_RETENTION_DAYS = 10\n"
    )
    monkeypatch.setenv("OPTIN_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("UNCONFIRMED_RETENTION_DAYS", "45")
    app = create_app()
    assert app.config["ORGANIZATION_ADDRESS"] == "From the file"
    assert app.config["UNCONFIRMED_RETENTION_DAYS"] == 45


def test_a_malformed_number_in_the_environment_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="MAIL_PORT"):
        from_environment({"MAIL_PORT": "twenty-five"}, DEFAULTS)


@pytest.mark.parametrize(
    ("url", "uri"),
    [
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql://u@h:5432/db", "postgresql+psycopg://u@h:5432/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
    ],
)
def test_database_urls_are_read_as_platforms_give_them(url: str, uri: str) -> None:
    assert database_uri(url, "/unused") == uri


def test_behind_a_trusted_proxy_the_customers_ip_is_recorded(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("OPTIN_INSTANCE_PATH", str(tmp_path))
    seen = {}
    for hops in (0, 1):
        app = create_app({"TESTING": True, "PROXY_FIX_X_FOR": hops})

        @app.get("/whoami")
        def whoami() -> str:
            from flask import request

            return request.remote_addr or ""

        answer = app.test_client().get(
            "/whoami",
            headers={"X-Forwarded-For": "198.51.100.7"},
            environ_base={"REMOTE_ADDR": "10.0.0.2"},
        )
        seen[hops] = answer.get_data(as_text=True)
    assert seen == {0: "10.0.0.2", 1: "198.51.100.7"}


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    undocumented = [name for name in DEFAULTS if f"`{name}`" not in readme]
    assert undocumented == []
