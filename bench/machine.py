"""The machine a run was made on, in one line: figures mean little without it."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
from pathlib import Path


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return None


def _cpu_count() -> int:
    """What ``nproc`` prints: the CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def postgres_version(conninfo: str) -> str:
    import psycopg

    with psycopg.connect(conninfo) as connection:
        row = connection.execute("SHOW server_version").fetchone()
    return str(row[0]).split()[0] if row else "unknown"


def source_revision() -> str:
    """The commit the figures were measured at, marked when app/ or migrations/ had changes not
    committed yet: optin changes quickly, and a figure belongs to one version of it."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        revision = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--", "app", "migrations")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{revision} (app/ or migrations/ modified)" if dirty else revision


def describe(postgres: str | None) -> str:
    """``postgres`` is the server's version, or None when the run did not use one."""
    memory = _memory_gib()
    parts = [
        f"{_cpu_count()} CPUs (nproc), {_cpu_model()}",
        f"{memory:.1f} GiB RAM" if memory else "RAM unknown",
        f"{platform.system()} {platform.release()}",
        f"Python {platform.python_version()}",
        f"SQLite {sqlite3.sqlite_version}",
        f"PostgreSQL {postgres}" if postgres else "PostgreSQL not run",
    ]
    return "Machine: " + "; ".join(parts)
