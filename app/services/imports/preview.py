"""The preview an admin sees before starting an import: the column mapping, the number of rows,
a sample of the rows that will be imported and the rows that will not, with why. The rows are
decided against the database exactly as the import will decide them, and nothing is written."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from flask import current_app

from app import queries
from app.database import utcnow
from app.extensions import db
from app.models import ImportJob, Resource
from app.services.errors import InvalidInput, UnknownResource
from app.services.imports.planning import Rules, plan_chunk
from app.services.imports.reading import ColumnMap, count_rows, read_header
from app.services.imports.rows import ImportRow, Rejection, RowParser, chunks
from app.services.statuses import Actor

# How many good rows the preview shows, and how many rejected ones.
PREVIEW_SAMPLE = 10
PREVIEW_REJECTIONS = 50


@dataclass(frozen=True)
class Preview:
    """What the admin sees before starting an import."""

    columns: ColumnMap
    total_rows: int
    checked_rows: int
    sample: list[ImportRow]
    rejections: list[Rejection]
    rejection_counts: list[tuple[str, int]]
    would_import: int
    would_leave_unchanged: int
    # Addresses its `hardbounced` rows will put on the suppression list (rule 6).
    would_suppress: int = 0

    @property
    def complete(self) -> bool:
        """Whether every row of the file was checked against the database."""
        return self.checked_rows >= self.total_rows


def resources_and_default(default_slug: str | None) -> tuple[list[Resource], Resource | None]:
    """Every resource, and the one named ``default_slug`` (``UnknownResource`` if none is)."""
    resources = list(queries.all_resources())
    if not default_slug:
        return resources, None
    for resource in resources:
        if resource.slug == default_slug:
            return resources, resource
    raise UnknownResource(default_slug)


def preview(path: str, default_slug: str | None, *, check_rows: int | None = None) -> Preview:
    """Parse the file and decide its rows against the database without writing anything: the
    column mapping, the number of rows, a sample of good rows, the rejected rows and why.
    The rules are checked on the first ``check_rows`` (IMPORT_PREVIEW_ROWS) rows."""
    if check_rows is None:
        check_rows = current_app.config["IMPORT_PREVIEW_ROWS"]
    columns = read_header(path)
    total = count_rows(path)
    resources, default = resources_and_default(default_slug)
    parser = RowParser(columns, resources, default, expected_rows=min(total, check_rows))
    rules = Rules()
    sample: list[ImportRow] = []
    shown: list[Rejection] = []
    counts: Counter[str] = Counter()
    checked = would_import = unchanged = would_suppress = 0
    now = utcnow()
    for rows, rejected, read in chunks(path, parser, check_rows):
        plan = plan_chunk(rows, rules, Actor(name="preview"), now)
        db.session.rollback()  # a read, ended so no snapshot is held
        checked += read
        would_import += len(plan.imported)
        unchanged += plan.unchanged
        would_suppress += len(plan.suppressions)
        every = sorted(rejected + plan.rejections, key=lambda r: r.line)
        counts.update(r.kind for r in every)
        shown.extend(every[: PREVIEW_REJECTIONS - len(shown)])
        sample.extend(plan.imported[: PREVIEW_SAMPLE - len(sample)])
    return Preview(
        columns,
        total,
        checked,
        sample,
        shown,
        counts.most_common(),
        would_import,
        unchanged,
        would_suppress,
    )


def job_preview(job: ImportJob) -> Preview:
    """The preview of an uploaded job (a read: nothing is written)."""
    if job.path is None:
        raise InvalidInput("this import's file is gone")
    slug = queries.resource_by_id(job.resource_id).slug if job.resource_id else None  # type: ignore[union-attr]
    try:
        return preview(job.path, slug)
    except OSError:
        raise InvalidInput("this import's file is gone") from None
