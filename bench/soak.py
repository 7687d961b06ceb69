"""``make soak``: the production topology under load, with faults, and a count of what was lost.

It starts, all on 127.0.0.1 and all its own: a PostgreSQL cluster (initdb into a temporary
folder, as the ``postgres`` user when run as root, so that restarting it disturbs no one else's
database), a Redis for the limiter, an SMTP server (aiosmtpd, in this process, so it can be taken
down and counted), gunicorn with 4 workers and two ``flask outbox work`` processes. C clients
sign up, confirm (from the link in the email they received) and unsubscribe (by the one-click
POST in the welcome's headers) for D seconds. Meanwhile one outbox worker is killed with SIGKILL
and restarted, the SMTP server is taken down and up, and PostgreSQL is restarted. Then it waits
for the outbox to drain and prints what was expected, received, missing and duplicated.

It exits non-zero when a signup that was answered has no profile, an email is missing, more
emails were duplicated than workers were killed (each may re-send the one message in flight),
or any request was answered 500 or not at all.

    python -m bench.soak [--clients 16] [--duration 90]
"""

from __future__ import annotations

import argparse
import contextlib
import email
import email.policy
import glob
import http.cookiejar
import os
import queue
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from aiosmtpd.controller import Controller

HOST = "127.0.0.1"  # only loopback, ever
ROOT = Path(__file__).resolve().parent.parent
SLUG = "soak"
DOMAIN = "soak.example"
WEB_WORKERS = 4
OUTBOX_WORKERS = 2
# A killed worker's claimed messages go to the others after this; short, so the drain is too.
LEASE_SECONDS = 20
CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')
ADDRESS = re.compile(r"^c(\d+)-(\d+)@")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {HOST}:{port} after {timeout:.0f} s")


# --- the parts ----------------------------------------------------------------------------------


def postgres_binary(name: str) -> str:
    """The newest installed PostgreSQL's ``name`` (Debian keeps them out of PATH)."""
    folders = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda path: int(path.split("/")[-2])
    )
    for folder in reversed(folders):
        if os.path.exists(os.path.join(folder, name)):
            return os.path.join(folder, name)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"PostgreSQL's {name} is not installed")
    return found


class Postgres:
    """A throwaway cluster of our own: restarting it is one of the faults."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.as_root = os.geteuid() == 0

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self.as_root else []
        subprocess.run([*prefix, *command], check=True, stdout=subprocess.DEVNULL)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/optin"

    def create(self) -> None:
        self.folder.mkdir(mode=0o700)
        if self.as_root:
            shutil.chown(self.folder, "postgres", "postgres")
        self._run(
            postgres_binary("initdb"),
            "-D",
            str(self.folder / "data"),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        self.start()
        self._run(postgres_binary("createdb"), "-h", HOST, "-p", str(self.port), "optin")

    def _ctl(self, *arguments: str) -> None:
        self._run(
            postgres_binary("pg_ctl"),
            "-D",
            str(self.folder / "data"),
            "-l",
            str(self.folder / "server.log"),
            "-w",
            "-t",
            "60",
            *arguments,
        )

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses={HOST} -k {self.folder}"
        self._ctl("-o", options, "start")

    def restart(self) -> None:
        """A clean restart, as an upgrade or a failover does: every connection is cut."""
        self._ctl("-m", "fast", "restart")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._ctl("-m", "immediate", "stop")


@dataclass
class Mailbox:
    """The SMTP server's side: every message received, and the links the clients act on."""

    base_url: str
    confirms: list[queue.Queue[tuple[str, str]]]  # (link, address) per client
    unsubscribes: list[queue.Queue[str]]
    received: Counter[tuple[str, str]] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        to = envelope.rcpt_tos[0].lower()
        # The confirmation is the one message without unsubscribe headers.
        unsubscribe = message.get("List-Unsubscribe")
        kind = "welcome" if unsubscribe else "confirm"
        with self.lock:
            self.received[(kind, to)] += 1
            first = self.received[(kind, to)] == 1
        owner = ADDRESS.match(to)
        if first and owner:
            client = int(owner.group(1))
            if kind == "confirm":
                body = message.get_body(("plain",))
                text = body.get_content() if body is not None else ""
                link = re.search(re.escape(self.base_url) + r"(/confirm/[^\s<>\"]+)", text)
                if link:
                    self.confirms[client].put((link.group(1), to))
            elif int(owner.group(2)) % 2 == 0:  # every other subscriber leaves again
                link = re.search(re.escape(self.base_url) + r"(/unsubscribe/[^>]+)>", unsubscribe)
                if link:
                    self.unsubscribes[client].put(link.group(1))
        return "250 OK"


class SmtpServer:
    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox
        self.port = free_port()
        self.controller: Controller | None = None

    def up(self) -> None:
        self.controller = Controller(self.mailbox, hostname=HOST, port=self.port)
        self.controller.start()

    def down(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


class Process:
    """A child in its own process group, so that stopping it stops exactly what was started."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], logs: Path) -> None:
        self.name, self.command, self.env = name, command, env
        self.log_path = logs / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                self.command,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self, how: signal.Signals = signal.SIGKILL) -> None:
        if self.popen is not None and self.popen.poll() is None:
            os.killpg(self.popen.pid, how)
            self.popen.wait(timeout=30)

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


# --- the clients --------------------------------------------------------------------------------


@dataclass
class Answer:
    kind: str
    status: int  # 0: no answer at all
    seconds: float
    at: float


@dataclass
class Tally:
    answers: list[Answer] = field(default_factory=list)
    signed_up: set[str] = field(default_factory=set)
    confirmed: set[str] = field(default_factory=set)
    unsubscribed: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, answer: Answer) -> None:
        with self.lock:
            self.answers.append(answer)


class Client(threading.Thread):
    """One customer after another: sign up, confirm from the email, sometimes unsubscribe."""

    def __init__(
        self, index: int, base_url: str, mailbox: Mailbox, tally: Tally, stop_at: float
    ) -> None:
        super().__init__(daemon=True)
        self.index, self.base_url, self.tally, self.stop_at = index, base_url, tally, stop_at
        self.confirms = mailbox.confirms[index]
        self.unsubscribes = mailbox.unsubscribes[index]

    def call(
        self, kind: str, path: str, data: dict[str, str] | None = None, opener: Any = None
    ) -> tuple[int, str]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(self.base_url + path, data=body)
        started = time.monotonic()
        try:
            with (opener or urllib.request.build_opener()).open(request, timeout=60) as answer:
                status, text = answer.status, answer.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as error:
            status, text = error.code, ""
        except OSError:
            status, text = 0, ""
        self.tally.note(Answer(kind, status, time.monotonic() - started, time.monotonic()))
        return status, text

    def run(self) -> None:
        number = 0
        while time.monotonic() < self.stop_at:
            self.confirm_one()
            self.unsubscribe_one()
            address = f"c{self.index}-{number}@{DOMAIN}"
            number += 1
            status, _ = self.call("signup", f"/subscribe/{SLUG}/embed", {"email": address})
            if status == 200:
                with self.tally.lock:
                    self.tally.signed_up.add(address)

    def confirm_one(self) -> None:
        try:
            path, address = self.confirms.get_nowait()
        except queue.Empty:
            return
        opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        status, page = self.call("confirm page", path, opener=opener)
        token = CSRF.search(page)
        if status == 200 and token:
            status, _ = self.call("confirm", path, {"csrf_token": token.group(1)}, opener)
        if status == 200:
            with self.tally.lock:
                self.tally.confirmed.add(address)
        elif status in (0, 503):
            self.confirms.put(
                (path, address)
            )  # the database was restarting: the customer clicks again

    def unsubscribe_one(self) -> None:
        try:
            path = self.unsubscribes.get_nowait()
        except queue.Empty:
            return
        status, _ = self.call("unsubscribe", path, {"List-Unsubscribe": "One-Click"})
        if status in (0, 503):
            self.unsubscribes.put(path)
        elif status == 200:
            with self.tally.lock:
                self.tally.unsubscribed.add(path)


# --- the run ------------------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[int(share * 100) - 1]


def soak(clients: int, duration: float, keep: bool) -> int:
    work = Path(tempfile.mkdtemp(prefix="optin-soak-"))
    os.chmod(work, 0o755)  # the postgres user must reach its folder inside
    logs = work / "logs"
    logs.mkdir()
    postgres = Postgres(work / "postgres")
    redis_port = free_port()
    web_port = free_port()
    base_url = f"http://{HOST}:{web_port}"
    mailbox = Mailbox(
        base_url,
        confirms=[queue.Queue() for _ in range(clients)],
        unsubscribes=[queue.Queue() for _ in range(clients)],
    )
    smtp = SmtpServer(mailbox)
    children: list[Process] = []
    faults: list[str] = []
    try:
        print(f"soak: {clients} clients for {duration:.0f} s; logs in {logs}", flush=True)
        postgres.create()
        redis = Process(
            "redis",
            ["redis-server", "--port", str(redis_port), "--bind", HOST, "--save", "",
             "--appendonly", "no"],
            dict(os.environ),
            logs,
        )  # fmt: skip
        children.append(redis)
        redis.start()
        smtp.up()
        env = {
            **os.environ,
            "DATABASE_URL": postgres.url,
            "RATELIMIT_STORAGE_URI": f"redis://{HOST}:{redis_port}/0",
            "OPTIN_INSTANCE_PATH": str(work / "instance"),
            "SECRET_KEY": secrets.token_hex(32),
            "BASE_URL": base_url,
            "MAIL_BACKEND": "smtp",
            "MAIL_SERVER": HOST,
            "MAIL_PORT": str(smtp.port),
            "OUTBOX_DELIVER_INLINE": "false",
            "OUTBOX_LEASE_SECONDS": str(LEASE_SECONDS),
            # Every client is 127.0.0.1: the per-IP limit would measure the limiter, not optin.
            "SIGNUP_LIMIT_PER_IP": "1000000 per minute",
            "PYTHONUNBUFFERED": "1",
        }
        flask = [sys.executable, "-m", "flask", "--app", "app"]
        subprocess.run([*flask, "db", "upgrade"], cwd=ROOT, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        subprocess.run([*flask, "resources", "add", SLUG, "--name", "Soak"], cwd=ROOT, env=env,
                       check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        wait_for_port(redis_port, 30)
        web = Process(
            "web",
            [sys.executable, "-m", "gunicorn", "-w", str(WEB_WORKERS), "-b",
             f"{HOST}:{web_port}", "--timeout", "60", "app:create_app()"],
            env,
            logs,
        )  # fmt: skip
        children.append(web)
        web.start()
        workers = [
            Process(f"worker{n}", [*flask, "outbox", "work", "--idle", "0.5"], env, logs)
            for n in range(OUTBOX_WORKERS)
        ]
        children.extend(workers)
        for worker in workers:
            worker.start()
        wait_for_port(web_port, 60)

        tally = Tally()
        started = time.monotonic()
        stop_at = started + duration

        team = [Client(n, base_url, mailbox, tally, stop_at) for n in range(clients)]
        for client in team:
            client.start()

        def at(share: float) -> None:
            time.sleep(max(0.0, started + share * duration - time.monotonic()))

        def stamp() -> float:
            return time.monotonic() - started

        at(0.2)
        workers[0].kill()
        faults.append(f"outbox worker killed (SIGKILL) at {stamp():.0f} s, restarted 2 s later")
        time.sleep(2)
        workers[0].start()
        at(0.4)
        outage = min(13.0, 0.15 * duration)
        smtp.down()
        down_at = stamp()
        time.sleep(outage)
        smtp.up()
        faults.append(f"SMTP server down from {down_at:.0f} s to {stamp():.0f} s")
        at(0.65)
        restart_from = time.monotonic()
        postgres.restart()
        restart_to = time.monotonic()
        faults.append(
            f"PostgreSQL restarted at {restart_from - started:.0f} s "
            f"({restart_to - restart_from:.1f} s)"
        )
        for client in team:
            client.join()
        ended = time.monotonic()

        # Wait for the outbox to drain: every message sent (or dropped by the rules).
        drain_from = time.monotonic()
        drained = False
        while time.monotonic() - drain_from < 600:
            with psycopg.connect(postgres.url) as connection:
                left = connection.execute(
                    "SELECT count(*) FROM outbox WHERE sent_at IS NULL"
                ).fetchone()
            if left and left[0] == 0:
                drained = True
                break
            time.sleep(1)
        time.sleep(2)  # the last message's SMTP conversation
        drain_seconds = time.monotonic() - drain_from
        with psycopg.connect(postgres.url) as connection:
            stored = {
                row[0]
                for row in connection.execute(
                    "SELECT email FROM profiles WHERE email LIKE %s", (f"%@{DOMAIN}",)
                )
            }
            dropped = connection.execute(
                "SELECT count(*) FROM outbox WHERE dropped_reason IS NOT NULL"
            ).fetchone()
        alive = [worker.name for worker in workers if worker.alive()]
        outage_lines = sum(
            worker.log_path.read_text(errors="replace").count("database unreachable")
            for worker in workers
        )
        outcome = report(
            tally=tally,
            mailbox=mailbox,
            stored=stored,
            killed=1,
            faults=faults,
            restart=(restart_from, restart_to),
            seconds=ended - started,
            drained=drained,
            drain_seconds=drain_seconds,
            dropped=dropped[0] if dropped else 0,
            alive=alive,
            outage_lines=outage_lines,
            clients=clients,
        )
        if outcome != 0:
            show_errors(work)
        return outcome
    finally:
        for child in reversed(children):
            child.kill(signal.SIGTERM)
        smtp.down()
        postgres.stop()
        if keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def show_errors(work: Path) -> None:
    """A failed run's errors, printed before its folder goes: the run that fails is the one
    whose logs are wanted (in CI nobody can look afterwards)."""
    for log in sorted((work / "logs").glob("*.log")):
        lines = log.read_text(errors="replace").splitlines()
        marked = [n for n, line in enumerate(lines) if "Traceback" in line or "Error" in line]
        if not marked:
            continue
        print(f"--- {log.name}: {len(marked)} lines with an error; the first ones in context")
        shown: set[int] = set()
        for n in marked[:5]:
            for m in range(max(0, n - 2), min(len(lines), n + 25)):
                if m not in shown:
                    shown.add(m)
                    print(lines[m])


def report(
    *,
    tally: Tally,
    mailbox: Mailbox,
    stored: set[str],
    killed: int,
    faults: list[str],
    restart: tuple[float, float],
    seconds: float,
    drained: bool,
    drain_seconds: float,
    dropped: int,
    alive: list[str],
    outage_lines: int,
    clients: int,
) -> int:
    """Print the table; the exit status says whether anything was lost."""
    received = mailbox.received
    lines: list[tuple[str, str]] = []
    problems: list[str] = []

    def mail(kind: str, expected: set[str]) -> int:
        got = {to for (k, to), n in received.items() if k == kind}
        missing = len(expected - got)
        duplicated = sum(n - 1 for (k, _to), n in received.items() if k == kind and n > 1)
        lines.append((f"{kind} emails expected", f"{len(expected):,}"))
        lines.append((f"{kind} emails received", f"{len(got):,}"))
        lines.append((f"{kind} emails missing", f"{missing:,}"))
        lines.append((f"{kind} emails duplicated", f"{duplicated:,}"))
        if missing:
            problems.append(f"{missing} {kind} emails missing")
        return duplicated

    signed_up = tally.signed_up
    lines.append(("signups answered", f"{len(signed_up):,}"))
    lines.append(("profiles stored", f"{len(stored):,}"))
    lost = signed_up - stored
    if lost:
        problems.append(f"{len(lost)} answered signups have no profile")
    if not signed_up:
        problems.append("no signup was answered")
    duplicated = mail("confirm", signed_up)
    duplicated += mail("welcome", tally.confirmed)
    lines.append(("unsubscribes answered", f"{len(tally.unsubscribed):,}"))
    if duplicated > killed:
        problems.append(f"{duplicated} emails duplicated, more than the {killed} workers killed")
    lines.append(("emails dropped by the rules at send time", f"{dropped:,}"))

    by_status = Counter(answer.status for answer in tally.answers)
    lines.append(
        (
            "answers by status",
            ", ".join(f"{status or 'none'}: {n:,}" for status, n in sorted(by_status.items())),
        )
    )
    window_from, window_to = restart[0], restart[1] + 5  # a pool may need a moment after
    during = sum(1 for a in tally.answers if a.status == 503 and window_from <= a.at <= window_to)
    lines.append(("503 during the PostgreSQL restart", f"{during:,}"))
    lines.append(("503 at other times", f"{by_status[503] - during:,}"))
    lines.append(("500 answers", f"{by_status[500]:,}"))
    if by_status[500]:
        problems.append(f"{by_status[500]} answers were 500")
    if by_status[0]:
        problems.append(f"{by_status[0]} requests got no answer at all")
    other = {s: n for s, n in by_status.items() if s not in (0, 200, 503, 500)}
    if other:
        problems.append(f"unexpected answers: {other}")

    answered = [a for a in tally.answers if a.status]
    lines.append(
        ("throughput", f"{len(answered) / seconds:,.1f} requests/s with {clients} clients")
    )
    per_kind: dict[str, list[float]] = defaultdict(list)
    for answer in answered:
        per_kind[answer.kind].append(answer.seconds * 1000)
    every = [value for values in per_kind.values() for value in values]
    lines.append(("p95 latency, all requests", f"{percentile(every, 0.95):.0f} ms"))
    for kind, values in sorted(per_kind.items()):
        lines.append((f"p95 latency, {kind}", f"{percentile(values, 0.95):.0f} ms"))
    lines.append(("outbox drained", f"in {drain_seconds:.0f} s" if drained else "NO (600 s)"))
    if not drained:
        problems.append("the outbox did not drain")
    lines.append(("outbox workers alive at the end", f"{len(alive)} of {OUTBOX_WORKERS}"))
    if len(alive) != OUTBOX_WORKERS:
        problems.append("an outbox worker exited")
    lines.append(("'database unreachable' lines in the workers' logs", f"{outage_lines}"))
    for number, fault in enumerate(faults, 1):
        lines.append((f"fault {number}", fault))

    print()
    print("| figure | value |")
    print("|---|---|")
    for name, value in lines:
        print(f"| {name} | {value} |")
    print()
    if problems:
        print("FAILED: " + "; ".join(problems))
        return 1
    print("passed: nothing lost, no 500")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (16)")
    parser.add_argument("--duration", type=float, default=90, help="seconds of load (90)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder and its logs")
    options = parser.parse_args(argv)
    if not 1 <= options.clients <= 64 or not 10 <= options.duration <= 600:
        parser.error("1 to 64 clients, 10 to 600 seconds: the load stays bounded")
    return soak(options.clients, options.duration, options.keep)


if __name__ == "__main__":
    sys.exit(main())
