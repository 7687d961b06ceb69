"""``python -m bench.http_profile``: where optin's API workers spend their time, sampled with
py-spy from the running gunicorn workers while the benchmark's three workloads run.

This is the evidence behind the recommendations of ``bench/API_BENCH.md``; it is a diagnostic,
not part of ``bench.http_api``'s figures (a sampling profiler slows the worker down a little).
py-spy is not a dependency of optin: install it into a venv of its own, e.g.

    python3 -m venv .bench-state/pyspy-venv && .bench-state/pyspy-venv/bin/pip install py-spy

and name it with ``--py-spy`` (that path is the default). It attaches to the workers with
ptrace, so it needs the same user as the workers (or CAP_SYS_PTRACE).

For each workload (``single``, ``batch``, ``stream``), one py-spy per worker records at 250 Hz
(``--format raw --nolineno``, idle samples left out); the stacks of both workers are merged and
printed as: the share of samples in which each function is on the stack (inclusive), for optin's
own code and the libraries it calls, and the functions the samples end in (self).
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench import dataset
from bench.dataset import log
from bench.http_api import (
    BATCH_SIZE,
    PROJECT_ROOT,
    RESOURCE,
    Backend,
    create_key,
    delete_key,
    eligibility_path,
    servers,
    single_addresses,
    sqlite_copy,
)
from bench.http_client import load, stream, timed_post

DEFAULT_PY_SPY = PROJECT_ROOT / ".bench-state" / "pyspy-venv" / "bin" / "py-spy"
RATE = 250


def record(py_spy: Path, pids: list[int], work: Callable[[], object], out: Path) -> list[Path]:
    """Run ``work`` with one py-spy per worker pid; returns the raw stack files."""
    files = [out.with_name(f"{out.name}-{pid}.txt") for pid in pids]
    spies = [
        subprocess.Popen(
            [
                *(str(py_spy), "record", "--pid", str(pid), "--rate", str(RATE)),
                *("--format", "raw", "--nolineno", "--output", str(path)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for pid, path in zip(pids, files, strict=True)
    ]
    try:
        work()
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        for spy in spies:
            try:
                _, err = spy.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                spy.kill()
                err = b""
            if spy.returncode not in (0, -signal.SIGINT, 130) and err:
                log(f"py-spy: {err.decode(errors='replace').strip()[-300:]}")
    return [path for path in files if path.exists()]


def frame_name(frame: str) -> str:
    """``function (path)`` as ``function (short path)``: the file relative to site-packages or the
    project."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in where:
            where = where.split(marker, 1)[1]
            break
    return f"{name} ({where})" if where else name


# Frames a sample ends in while the worker waits rather than works: for the next connection,
# and for the client to close after the response (gunicorn's close_graceful drains the socket).
WAITING = ("SyncWorker.wait (gunicorn/", "close_graceful (gunicorn/")
# The worker's own loop, on every stack: left out of the inclusive list.
FRAMEWORK = ("gunicorn/arbiter.py", "gunicorn/app/", "gunicorn/workers/", "gunicorn/__main__")
LIBRARIES = (
    "sqlalchemy/",
    "email_validator/",
    "json/",
    "flask/",
    "werkzeug/",
    "gunicorn/",
    "itsdangerous/",
    "sqlite3",
    "psycopg/",
)


def summarize(files: list[Path], title: str, top: int) -> str:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = waiting = 0
    for path in files:
        for line in path.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack:
                continue
            count = int(count_text)
            frames = [frame_name(f) for f in stack.split(";")]
            if frames[-1].startswith(WAITING):
                waiting += count
                continue
            total += count
            own[frames[-1]] += count
            for name in set(frames):
                inclusive[name] += count
    if not total:
        return f"## {title}\n\n(no samples)\n"
    lines = [
        f"## {title}",
        "",
        f"{total:,} busy samples ({total / RATE:.1f} s of worker time); {waiting:,} more samples "
        "waited for a connection or for the client to close (left out of the shares).",
        "",
        "Inclusive (share of busy samples with the function on the stack), optin's code and the "
        "libraries it calls:",
        "",
        "| share | function |",
        "|---:|---|",
    ]
    wanted = [
        (name, n)
        for name, n in inclusive.most_common()
        if ("(app/" in name or any(part in name for part in LIBRARIES))
        and not any(part in name for part in FRAMEWORK)
    ]
    for name, n in wanted[:top]:
        lines.append(f"| {100 * n / total:.1f} % | `{name}` |")
    lines += ["", "Self (the frame a sample ends in):", "", "| share | function |", "|---:|---|"]
    for name, n in own.most_common(top // 2):
        lines.append(f"| {100 * n / total:.1f} % | `{name}` |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.http_profile", description=__doc__)
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--postgres", metavar="URL", help="profile on PostgreSQL instead")
    parser.add_argument("--py-spy", type=Path, default=DEFAULT_PY_SPY)
    parser.add_argument("--requests", type=int, default=2000, help="single GETs")
    parser.add_argument("--batch-runs", type=int, default=10)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--output", type=Path, help="also write the summary here")
    args = parser.parse_args(argv)
    if not args.py_spy.exists():
        raise SystemExit(f"no py-spy at {args.py_spy}; see this module's docstring")

    workdir = Path(tempfile.mkdtemp(prefix="optin-http-profile-"))
    server = None
    try:
        if args.postgres:
            target = dataset.PostgresTarget.from_url(args.postgres)
            dataset.ensure_postgres(target, args.profiles)
            backend = Backend("PostgreSQL", "postgres", target.app_url, target.conninfo)
        else:
            copy = sqlite_copy(dataset.ensure_sqlite(args.profiles), workdir)
            backend = Backend("SQLite", "sqlite", f"sqlite:///{copy}", str(copy))
        instance = workdir / "instance"
        instance.mkdir()
        key_name, key = create_key(backend, instance)
        headers = {"Authorization": f"Bearer {key}"}
        server = servers(backend, workdir, variants=False)[0]
        server.start(PROJECT_ROOT, "/api/v1/openapi.json")
        pids = server.worker_pids()
        paths = [eligibility_path(a) for a in single_addresses(args.profiles, args.requests, 4)]
        load(server.port, paths[:200], headers, 8, 30)  # warm-up
        emails = dataset.decision_batch(args.profiles, BATCH_SIZE)
        body = json.dumps({"emails": emails, "resource": RESOURCE, "channel": "email"}).encode()
        post_headers = {**headers, "Content-Type": "application/json"}
        timed_post(server.port, "/api/v1/eligibility", post_headers, body)

        workloads: list[tuple[str, Callable[[], object]]] = [
            (
                f"single GET /eligibility ({args.requests:,} requests, C=8)",
                lambda: load(server.port, paths, headers, 8, 120),
            ),
            (
                f"POST /eligibility, {BATCH_SIZE:,} addresses ({args.batch_runs} calls)",
                lambda: [
                    timed_post(server.port, "/api/v1/eligibility", post_headers, body)
                    for _ in range(args.batch_runs)
                ],
            ),
            (
                f"GET /resources/{RESOURCE}/audience (one full stream)",
                lambda: stream(
                    server.port,
                    f"/api/v1/resources/{RESOURCE}/audience",
                    {**headers, "Accept": "application/x-ndjson"},
                    pids,
                ),
            ),
        ]
        report = [
            f"# optin's API workers under py-spy ({backend.name}, {args.profiles:,} profiles)"
        ]
        for number, (title, work) in enumerate(workloads):
            log(f"profiling: {title}")
            files = record(args.py_spy, pids, work, workdir / f"workload{number}")
            report.append(summarize(files, title, args.top))
        text = "\n\n".join(report)
        print(text)
        if args.output:
            args.output.write_text(text)
        if backend.kind == "postgres":
            delete_key(backend, instance, key_name)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
