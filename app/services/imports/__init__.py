"""CSV import of existing subscribers (SPEC §4): read the file, decide each row with the rules of
status.py (cause ``import``), write the rows that pass in chunks, and record every row that does
not with its line number and reason.

An import may only do what status.py lets cause ``import`` do: it lowers statuses and records
consent it is given, but it never lifts `unsubscribed`, `complainer` or `hardbounced`, never
touches `invalid`, never ends a suspension and never touches an address on the suppression list.
A `hardbounced` row puts its address on that list, as a bounce does (rule 6). It sends no email.
A second import of the same file finds every row as it says already and changes and records
nothing (rule 9).

The parts, in the order a row meets them:

- ``reading``: the file's dialect, which column is which (header aliases), its raw rows;
- ``rows``: the checks on a row that need no database, duplicates in the file, chunks of rows;
- ``planning``: a chunk's rows decided against the database with status.py, as a ``Plan``;
- ``bulk_writer``: the plan written with bulk statements (the one place that bypasses the ORM);
- ``preview``: what the admin sees before the start, decided the same way, written nowhere;
- ``jobs``: the job's life, from upload to done, claimed by a worker with a lease.

Memory holds one chunk, and the 64-bit keys that find duplicates in an array sized at the start
(``SeenKeys``). The names other modules use are importable from here.
"""

from __future__ import annotations

from app.services.imports.bulk_writer import db_time, rejection_hash, write_plan
from app.services.imports.jobs import (
    CLI_ACTOR,
    FINISHED,
    Claim,
    JobState,
    claim_next,
    create_job,
    discard,
    import_file,
    job_or_404,
    queue,
    run_claimed,
    run_job,
    save_upload,
    stalled,
    start_in_background,
    upload_folder,
)
from app.services.imports.planning import Plan, Rules, Verdict, plan_chunk
from app.services.imports.preview import Preview, job_preview, preview
from app.services.imports.reading import (
    HEADER_ALIASES,
    ColumnMap,
    ImportFileError,
    count_rows,
    map_columns,
    parse_consent_date,
    read_csv,
    read_header,
)
from app.services.imports.rows import CHUNK, ImportRow, Rejection, RowParser, SeenKeys

__all__ = [
    "CHUNK",
    "CLI_ACTOR",
    "FINISHED",
    "HEADER_ALIASES",
    "Claim",
    "ColumnMap",
    "ImportFileError",
    "ImportRow",
    "JobState",
    "Plan",
    "Preview",
    "Rejection",
    "RowParser",
    "Rules",
    "SeenKeys",
    "Verdict",
    "claim_next",
    "count_rows",
    "create_job",
    "db_time",
    "discard",
    "import_file",
    "job_or_404",
    "job_preview",
    "map_columns",
    "parse_consent_date",
    "plan_chunk",
    "preview",
    "queue",
    "read_csv",
    "read_header",
    "rejection_hash",
    "run_claimed",
    "run_job",
    "save_upload",
    "stalled",
    "start_in_background",
    "upload_folder",
    "write_plan",
]
