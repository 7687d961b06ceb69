"""The admin's CSV import (``/admin/imports``): upload a file, look at its preview, start it, and
watch it run in the background; the job page then shows the result and the rejected rows."""

from __future__ import annotations

from flask import Flask, abort, current_app, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from wtforms.fields.choices import SelectChoice  # type: ignore[attr-defined]  # WTForms 3.3's; types-WTForms 3.2 lacks it

from app import queries
from app.admin_forms import ButtonForm, ImportUploadForm
from app.database import utcnow
from app.services import imports
from app.services.errors import InvalidInput, NotFound
from app.views.admin import admin

REJECTIONS_PER_PAGE = 50
# Seconds between reloads of a running import's page.
REFRESH_SECONDS = 1


def allow_large_upload() -> None:
    """The import's upload may be larger than MAX_CONTENT_LENGTH: IMPORT_MAX_BYTES, for that
    one route and a logged-in admin only. It runs before every other hook, since the CSRF check
    reads the form; the login guard runs after it, so without the login check here anyone could
    make the server take in 200 MiB bodies."""
    if (
        request.endpoint == "admin.imports"
        and request.method == "POST"
        and current_user.is_authenticated
    ):
        request.max_content_length = current_app.config["IMPORT_MAX_BYTES"]


def register_upload_limit(app: Flask) -> None:
    """Put ``allow_large_upload`` first among the app's before-request hooks."""
    app.before_request_funcs.setdefault(None, []).insert(0, allow_large_upload)


def _resource_choices(form: ImportUploadForm) -> None:
    form.resource.choices = [SelectChoice("", "none: every row names its resource")] + [
        SelectChoice(resource.slug, f"{resource.name} ({resource.slug})")
        for resource in queries.all_resources()
    ]


@admin.route("/imports", methods=["GET", "POST"], endpoint="imports")
def imports_page() -> ResponseReturnValue:
    """The upload form and the list of past imports. A good upload becomes an import waiting
    for its start, and the browser goes to its preview."""
    form = ImportUploadForm()
    _resource_choices(form)
    if form.validate_on_submit():
        upload = form.file.data
        path = imports.save_upload(upload.stream, upload.filename or "import.csv")
        try:
            job = imports.create_job(
                path,
                upload.filename or "import.csv",
                form.resource.data or None,
                current_user.email,
            )
        except (InvalidInput, NotFound) as error:
            form.file.errors = [str(error)]
        else:
            return redirect(url_for("admin.import_job", job_id=job.id), code=303)
    status = 400 if request.method == "POST" else 200
    jobs = queries.recent_import_jobs()
    now, limit = utcnow(), current_app.config["IMPORT_STALL_SECONDS"]
    stalled = {job.id for job in jobs if imports.stalled(job, now, limit)}
    page = render_template("admin/imports.html", form=form, jobs=jobs, stalled=stalled)
    return page, status


@admin.get("/imports/<int:job_id>")
def import_job(job_id: int) -> ResponseReturnValue:
    """One import: its preview before the start, its progress while it runs (the page reloads
    itself), then its counts and its rejected rows, a page at a time."""
    job = queries.import_job(job_id)
    if job is None:
        abort(404)
    preview = preview_error = None
    if job.state == imports.JobState.UPLOADED:
        try:
            preview = imports.job_preview(job)
        except (InvalidInput, NotFound) as error:
            preview_error = str(error)
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    rejections = queries.import_rejections(
        job.id, offset=(page - 1) * REJECTIONS_PER_PAGE, limit=REJECTIONS_PER_PAGE
    )
    pages = max((job.rejected_rows + REJECTIONS_PER_PAGE - 1) // REJECTIONS_PER_PAGE, 1)
    counts = queries.import_rejection_counts(job.id) if job.state in imports.FINISHED else []
    resource = queries.resource_by_id(job.resource_id) if job.resource_id else None
    is_stalled = imports.stalled(job, utcnow(), current_app.config["IMPORT_STALL_SECONDS"])
    return render_template(
        "admin/import_job.html",
        job=job,
        resource=resource,
        preview=preview,
        preview_error=preview_error,
        rejections=rejections,
        counts=counts,
        page=page,
        pages=pages,
        running=job.state in (imports.JobState.QUEUED, imports.JobState.RUNNING) and not is_stalled,
        stalled=is_stalled,
        refresh=REFRESH_SECONDS,
        button=ButtonForm(),
    )


@admin.post("/imports/<int:job_id>/start")
def start_import(job_id: int) -> ResponseReturnValue:
    """Start an uploaded import, or resume one whose process ended (a second click starts
    nothing): a worker claims it, or in the embedded default this process runs it."""
    if not ButtonForm().validate_on_submit():
        abort(400)
    try:
        imports.start_in_background(job_id)
    except NotFound:
        abort(404)
    return redirect(url_for("admin.import_job", job_id=job_id), code=303)


@admin.post("/imports/<int:job_id>/discard")
def discard_import(job_id: int) -> ResponseReturnValue:
    """Drop an uploaded import that was not started, and its file."""
    if not ButtonForm().validate_on_submit():
        abort(400)
    try:
        imports.discard(job_id)
    except NotFound:
        abort(404)
    except InvalidInput:
        pass  # started meanwhile: the job page says so
    return redirect(url_for("admin.imports"), code=303)
