"""The admin's import and export pages through the test client: the login and CSRF guards, the
upload, preview, start, progress and result of an import, bad files, and the CSV exports."""

from __future__ import annotations

import csv
import io
import re
import time
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app import queries, worker
from app.database import utcnow
from app.extensions import db
from app.models import ImportJob, Profile, Resource, StatusEvent
from app.services import imports
from tests import factories
from tests.conftest import ADMIN_EMAIL
from tests.helpers import count, csrf_token, database_state

CSV = (
    "Email Address,First Name,Status,Consent Date\n"
    "ann@example.com,Ann,subscribed,2024-01-01\n"
    "bob@example.com,<b>Bob</b>,unsubscribed,\n"
    "not-an-address,X,subscribed,2024-01-01\n"
    "cid@example.com,Cid,whatever,\n"
)


def upload(client: FlaskClient, content: bytes, resource: str = "newsletter", **extra: object):  # type: ignore[no-untyped-def]
    token = csrf_token(client, "/admin/imports")
    data = {"csrf_token": token, "resource": resource, **extra}
    data["file"] = (io.BytesIO(content), "people.csv")
    return client.post("/admin/imports", data=data, content_type="multipart/form-data")


def job_id_of(answer) -> int:  # type: ignore[no-untyped-def]
    found = re.search(r"/admin/imports/(\d+)$", answer.headers["Location"])
    assert found, answer.headers["Location"]
    return int(found.group(1))


def wait_until_finished(client: FlaskClient, job_id: int, seconds: float = 20) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        # The test shares the app context, and so the session, with its requests: end its read
        # so that the page sees what the import's thread committed.
        db.session.rollback()
        worker.work(100, 0, once=True, echo=lambda _line: None)  # claims the import and runs it
        page = client.get(f"/admin/imports/{job_id}").get_data(as_text=True)
        if 'http-equiv="refresh"' not in page:
            return page
        time.sleep(0.05)
    raise AssertionError("the import did not finish")


@pytest.mark.parametrize("path", ["/admin/imports", "/admin/imports/1", "/admin/exports"])
def test_anonymous_visitors_are_sent_to_the_login(client: FlaskClient, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 302
    assert "/admin/login" in answer.headers["Location"]


def test_anonymous_posts_are_refused(client: FlaskClient, newsletter: Resource) -> None:
    # Without a session there is no CSRF token to send: the check refuses them first.
    for path in (
        "/admin/imports",
        "/admin/imports/1/start",
        "/admin/exports/audience",
        "/admin/exports/profiles",
    ):
        assert client.post(path).status_code in (302, 400)
    # Even with a token from the login form, the login guard stands.
    token = csrf_token(client, "/admin/login")
    answer = client.post("/admin/exports/profiles", data={"csrf_token": token}, content_type=None)
    assert answer.status_code == 302
    assert "/admin/login" in answer.headers["Location"]


def test_upload_preview_start_progress_and_result(
    admin_client: FlaskClient, newsletter: Resource
) -> None:
    page = admin_client.get("/admin/imports")
    assert page.status_code == 200
    assert 'href="/admin/imports"' in page.get_data(as_text=True)  # in the navigation

    answer = upload(admin_client, CSV.encode())
    assert answer.status_code == 303
    job_id = job_id_of(answer)

    # The preview: the mapping, a sample, the rejected rows and why; nothing imported yet.
    preview = admin_client.get(f"/admin/imports/{job_id}").get_data(as_text=True)
    assert "<td>email</td><td>Email Address</td>" in preview
    assert "<td>consent_date</td><td>Consent Date</td>" in preview
    assert "ann@example.com" in preview
    assert "&lt;b&gt;Bob&lt;/b&gt;" in preview and "<b>Bob</b>" not in preview
    assert "malformed address" in preview and "unknown status: whatever" in preview
    assert count(Profile) == 0
    assert queries.import_job(job_id).state == "uploaded"  # type: ignore[union-attr]

    token = csrf_token(admin_client, f"/admin/imports/{job_id}")
    started = admin_client.post(f"/admin/imports/{job_id}/start", data={"csrf_token": token})
    assert started.status_code == 303
    db.session.rollback()
    assert queries.import_job(job_id).state == "queued"  # type: ignore[union-attr]
    result = wait_until_finished(admin_client, job_id)
    assert "The import is done." in result
    assert re.search(r'id="imported">2<', result)
    assert re.search(r'id="rejected">2<', result)
    assert "line" not in result.lower() or "Line" in result
    assert ">4<" in result and ">5<" in result  # the line numbers of the rejected rows
    db.session.rollback()
    assert count(Profile) == 2
    assert {e.actor for e in db.session.query(StatusEvent)} == {ADMIN_EMAIL}

    # A second click on the old form starts nothing.
    again = admin_client.post(f"/admin/imports/{job_id}/start", data={"csrf_token": token})
    assert again.status_code == 303
    assert count(ImportJob) == 1
    listing = admin_client.get("/admin/imports").get_data(as_text=True)
    assert "people.csv" in listing and "done" in listing


def test_the_page_of_a_running_import_refreshes_itself(
    admin_client: FlaskClient, newsletter: Resource
) -> None:
    job_id = job_id_of(upload(admin_client, CSV.encode()))
    imports.queue(job_id)  # as the start does, before its thread picks the job up
    page = admin_client.get(f"/admin/imports/{job_id}").get_data(as_text=True)
    assert '<meta http-equiv="refresh" content="1">' in page
    assert "0 of 4 rows" in page
    imports.run_job(job_id)
    page = admin_client.get(f"/admin/imports/{job_id}").get_data(as_text=True)
    assert "refresh" not in page


def test_an_import_whose_process_ended_shows_as_stalled_and_stops_reloading(
    admin_client: FlaskClient, newsletter: Resource
) -> None:
    job_id = job_id_of(upload(admin_client, CSV.encode()))
    imports.queue(job_id)
    # Its thread never ran: the process was restarted an hour ago.
    job = db.session.get(ImportJob, job_id)
    assert job is not None
    job.progressed_at = job.progressed_at - timedelta(hours=1)
    db.session.commit()
    page = admin_client.get(f"/admin/imports/{job_id}").get_data(as_text=True)
    assert "refresh" not in page
    assert "This import stopped after 0 rows" in page
    assert "stalled" in admin_client.get("/admin/imports").get_data(as_text=True)
    # Importing the file again finishes the work; the stalled job changed nothing.
    assert count(Profile) == 0


def test_stalled_reads_the_last_sign_of_life(newsletter: Resource) -> None:
    now = utcnow()
    job = ImportJob(
        filename="x.csv", state=imports.JobState.RUNNING, created_at=now, progressed_at=now
    )
    assert not imports.stalled(job, now + timedelta(seconds=599), 600)
    assert imports.stalled(job, now + timedelta(seconds=601), 600)
    job.state = imports.JobState.DONE
    assert not imports.stalled(job, now + timedelta(days=1), 600)


def test_rejected_rows_are_paginated(admin_client: FlaskClient, newsletter: Resource) -> None:
    rows = "".join(f"bad{i}\n" for i in range(120))
    job_id = job_id_of(upload(admin_client, ("email,status\n" + rows).encode()))
    imports.run_job(job_id)
    first = admin_client.get(f"/admin/imports/{job_id}").get_data(as_text=True)
    assert "Page 1 of 3" in first and ">bad0<" in first and ">bad50<" not in first
    third = admin_client.get(f"/admin/imports/{job_id}?page=3").get_data(as_text=True)
    assert ">bad119<" in third and ">bad0<" not in third


def test_a_discarded_upload_is_gone_with_its_file(
    admin_client: FlaskClient, newsletter: Resource
) -> None:
    job_id = job_id_of(upload(admin_client, CSV.encode()))
    path = queries.import_job(job_id).path  # type: ignore[union-attr]
    assert path and Path(path).exists()
    token = csrf_token(admin_client, f"/admin/imports/{job_id}")
    answer = admin_client.post(f"/admin/imports/{job_id}/discard", data={"csrf_token": token})
    assert answer.status_code == 303
    db.session.rollback()
    assert queries.import_job(job_id).state == "discarded"  # type: ignore[union-attr]
    assert not Path(path).exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "not UTF-8"),
        (b"name;status\nAnn;subscribed\n", "no email column"),
        (b"email,status\n\xe9t\xe9@example.com,subscribed\n", "not UTF-8"),
    ],
)
def test_a_bad_file_gets_a_clear_form_error(
    admin_client: FlaskClient, newsletter: Resource, content: bytes, message: str
) -> None:
    answer = upload(admin_client, content)
    assert answer.status_code == 400
    assert message in answer.get_data(as_text=True)
    assert count(ImportJob) == 0


def test_no_file_and_no_csrf_token_are_refused(
    admin_client: FlaskClient, newsletter: Resource
) -> None:
    token = csrf_token(admin_client, "/admin/imports")
    answer = admin_client.post("/admin/imports", data={"csrf_token": token, "resource": ""})
    assert answer.status_code == 400
    assert "Choose a CSV file." in answer.get_data(as_text=True)

    answer = admin_client.post(
        "/admin/imports",
        data={"file": (io.BytesIO(CSV.encode()), "a.csv"), "resource": "newsletter"},
        content_type="multipart/form-data",
    )
    assert answer.status_code == 400
    job_id = job_id_of(upload(admin_client, CSV.encode()))
    for action in ("start", "discard"):
        answer = admin_client.post(f"/admin/imports/{job_id}/{action}")
        assert answer.status_code == 400
    assert queries.import_job(job_id).state == "uploaded"  # type: ignore[union-attr]
    for path in ("/admin/exports/audience", "/admin/exports/profiles"):
        assert admin_client.post(path).status_code == 400


def test_uploads_larger_than_the_general_limit_are_accepted_up_to_the_import_limit(
    app: Flask, admin_client: FlaskClient, newsletter: Resource
) -> None:
    # 2 MiB: twice MAX_CONTENT_LENGTH, which every other form keeps.
    rows = "".join(f"someone{i}@example.com,unsubscribed\n" for i in range(60_000))
    content = ("email,status\n" + rows).encode()
    assert len(content) > app.config["MAX_CONTENT_LENGTH"]
    assert upload(admin_client, content).status_code == 303

    app.config["IMPORT_MAX_BYTES"] = 1024 * 1024
    answer = upload(admin_client, content)
    assert answer.status_code == 413
    # Elsewhere the general limit stands.
    answer = admin_client.post("/admin/exports/profiles", data={"x": "y" * 2_000_000})
    assert answer.status_code == 413


def test_only_a_logged_in_admin_may_send_a_large_upload(
    app: Flask, client: FlaskClient, newsletter: Resource
) -> None:
    body = {"file": (io.BytesIO(b"email,status\n" + b"x" * 2_000_000), "big.csv")}
    answer = client.post("/admin/imports", data=body, content_type="multipart/form-data")
    assert answer.status_code == 413
    assert count(ImportJob) == 0


def test_a_get_changes_nothing(admin_client: FlaskClient, newsletter: Resource) -> None:
    job_id = job_id_of(upload(admin_client, CSV.encode()))
    before = database_state()
    for path in (
        "/admin/imports",
        f"/admin/imports/{job_id}",
        f"/admin/imports/{job_id}/start",
        "/admin/exports",
        "/admin/exports/audience",
    ):
        admin_client.get(path)
    assert database_state() == before
    assert queries.import_job(job_id).state == "uploaded"  # type: ignore[union-attr]
    assert admin_client.get("/admin/imports/999").status_code == 404


# --- Export -----------------------------------------------------------------------------------


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def subscribe(email: str, slug: str, name: str | None = None) -> None:
    factories.set_status(email, "subscribed", resource=slug, consent_proof=True)
    if name is not None:
        profile = queries.profile_by_email(email)
        assert profile is not None
        profile.name = name
        db.session.commit()


def test_the_audience_export_is_a_csv_with_formula_like_cells_quoted(
    admin_client: FlaskClient, newsletter: Resource
) -> None:
    subscribe("ann@example.com", "newsletter", '=HYPERLINK("http://evil","x")')
    subscribe("bob@example.com", "newsletter", "+Bob")
    subscribe("cid@example.com", "newsletter", "Cid")
    factories.unsubscribe("cid@example.com", "newsletter")
    token = csrf_token(admin_client, "/admin/exports")
    answer = admin_client.post(
        "/admin/exports/audience",
        data={"csrf_token": token, "audience-resource": "newsletter", "audience-channel": "email"},
    )
    assert answer.status_code == 200
    assert answer.mimetype == "text/csv"
    assert "attachment" in answer.headers["Content-Disposition"]
    rows = read_csv(answer.get_data(as_text=True))
    assert [(row["email"], row["name"]) for row in rows] == [
        ("ann@example.com", '\'=HYPERLINK("http://evil","x")'),
        ("bob@example.com", "'+Bob"),
    ]
    assert rows[0]["unsubscribe_url"].startswith("https://optin.test/unsubscribe/")


def test_the_profiles_export_filters(
    admin_client: FlaskClient, newsletter: Resource, offers: Resource
) -> None:
    subscribe("ann@example.com", "newsletter", "-Ann")
    subscribe("bob@example.com", "offers")
    factories.unsubscribe("bob@example.com", None)
    token = csrf_token(admin_client, "/admin/exports")

    def export(**filters: str) -> list[dict[str, str]]:
        # As a browser sends the form: every field, the untouched ones empty.
        fields = dict.fromkeys(
            ("global_status", "resource", "subscription_status", "created_from", "created_before"),
            "",
        )
        fields.update(filters)
        data = {"csrf_token": token, **{f"profiles-{k}": v for k, v in fields.items()}}
        answer = admin_client.post("/admin/exports/profiles", data=data)
        assert answer.status_code == 200, answer.get_data(as_text=True)
        return read_csv(answer.get_data(as_text=True))

    everyone = export()
    assert [(r["email"], r["name"], r["global_status"]) for r in everyone] == [
        ("ann@example.com", "'-Ann", "subscribed"),
        ("bob@example.com", "", "unsubscribed"),
    ]
    assert [r["email"] for r in export(global_status="unsubscribed")] == ["bob@example.com"]
    by_resource = export(resource="offers", subscription_status="subscribed")
    assert [(r["email"], r["subscription_status"]) for r in by_resource] == [
        ("bob@example.com", "subscribed")
    ]
    assert export(created_before="2000-01-01") == []
    assert len(export(created_from="2000-01-01")) == 2

    answer = admin_client.post(
        "/admin/exports/profiles",
        data={
            "csrf_token": token,
            "profiles-global_status": "",
            "profiles-resource": "",
            "profiles-subscription_status": "subscribed",
        },
    )
    assert answer.status_code == 400
    assert "Choose the resource" in answer.get_data(as_text=True)


def test_the_api_csv_stays_as_stored(app: Flask, client: FlaskClient, newsletter: Resource) -> None:
    from app.services.api_keys import create_key

    subscribe("ann@example.com", "newsletter", "=1+1")
    _row, key = create_key("sender")
    answer = client.get(
        "/api/v1/resources/newsletter/audience",
        headers={"Authorization": f"Bearer {key}", "Accept": "text/csv"},
    )
    assert answer.status_code == 200
    rows = read_csv(answer.get_data(as_text=True))
    assert [(r["email"], r["name"]) for r in rows] == [("ann@example.com", "=1+1")]


# --- Command line -----------------------------------------------------------------------------


def test_flask_import_and_export(app: Flask, tmp_path: Path, newsletter: Resource) -> None:
    runner = app.test_cli_runner()
    path = tmp_path / "people.csv"
    path.write_text(CSV, encoding="utf-8")
    result = runner.invoke(args=["import", str(path), "--resource", "newsletter"])
    assert result.exit_code == 0, result.output
    assert "imported 2, unchanged 0, rejected 2" in result.output
    assert "line 4: not-an-address: malformed address" in result.output
    assert "line 5: cid@example.com: unknown status: whatever" in result.output
    assert path.exists()  # the user's own file is left where it was
    db.session.rollback()
    assert {e.actor for e in db.session.query(StatusEvent)} == {"cli"}

    again = runner.invoke(args=["import", str(path), "--resource", "newsletter"])
    assert "imported 0, unchanged 2, rejected 2" in again.output

    out = tmp_path / "audience.csv"
    result = runner.invoke(args=["export", "newsletter", "--output", str(out)])
    assert result.exit_code == 0, result.output
    rows = read_csv(out.read_text(encoding="utf-8"))
    assert [(r["email"], r["name"]) for r in rows] == [("ann@example.com", "Ann")]
    printed = runner.invoke(args=["export", "newsletter"])
    assert printed.output.startswith("email,name,unsubscribe_url")


def test_flask_import_and_export_refuse_bad_input(
    app: Flask, tmp_path: Path, newsletter: Resource
) -> None:
    runner = app.test_cli_runner()
    path = tmp_path / "people.csv"
    path.write_text("name,status\nAnn,subscribed\n", encoding="utf-8")
    result = runner.invoke(args=["import", str(path), "--resource", "newsletter"])
    assert result.exit_code != 0
    assert "no email column" in result.output
    path.write_text(CSV, encoding="utf-8")
    result = runner.invoke(args=["import", str(path), "--resource", "nope"])
    assert result.exit_code != 0 and "no resource 'nope'" in result.output
    result = runner.invoke(args=["export", "nope"])
    assert result.exit_code != 0 and "no resource 'nope'" in result.output
    result = runner.invoke(args=["export", "newsletter", "--channel", "fax"])
    assert result.exit_code != 0 and "unknown channel 'fax'" in result.output


@pytest.mark.parametrize("name", ["a\x00b.csv", "é" * 400 + ".csv", "../../etc/passwd"])
def test_odd_file_names_get_a_clear_answer(
    admin_client: FlaskClient, newsletter: Resource, name: str
) -> None:
    token = csrf_token(admin_client, "/admin/imports")
    content = (io.BytesIO(b"email,status\na@example.com,unsubscribed\n"), name)
    answer = admin_client.post(
        "/admin/imports",
        data={"csrf_token": token, "resource": "newsletter", "file": content},
        content_type="multipart/form-data",
    )
    if "\x00" in name:
        assert answer.status_code == 400
        assert count(ImportJob) == 0
    else:
        assert answer.status_code == 303
        job = db.session.scalars(select(ImportJob)).one()
        assert "/" not in job.filename and len(job.filename) <= 300


def test_the_preview_and_the_result_count_the_addresses_an_import_suppresses(
    admin_client: FlaskClient, newsletter: Resource
) -> None:
    cleaned = (
        "Email Address,Status\n"
        "ann@example.com,subscribed\n"
        "gone@example.com,hardbounced\n"
        "old@example.com,cleaned-up\n"  # an unknown status: rejected, suppresses nothing
        "void@example.com,3\n"
    )
    job_id = job_id_of(upload(admin_client, cleaned.encode()))
    preview = admin_client.get(f"/admin/imports/{job_id}").get_data(as_text=True)
    assert re.search(r'id="would-suppress">2</strong> will be suppressed', preview)

    token = csrf_token(admin_client, f"/admin/imports/{job_id}")
    admin_client.post(f"/admin/imports/{job_id}/start", data={"csrf_token": token})
    result = wait_until_finished(admin_client, job_id)
    assert re.search(r'id="suppressed">2<', result)
    assert "Addresses added to the suppression list" in result
    listed = admin_client.get("/admin/suppressions").get_data(as_text=True)
    assert "gone@example.com" in listed and "void@example.com" in listed
