"""`make serve`, the production topology (issue 10, item 1): honcho runs the Procfile's gunicorn,
outbox worker, upkeep and inbound mail receiver against a fresh database and a Redis of its own,
with a real SMTP server; a signup over HTTP gets its confirmation from the worker process, the
receiver takes mail for the unsubscribe address only, and the whole thing stops cleanly when
told to."""

from __future__ import annotations

import os
import re
import signal
import smtplib
import subprocess
import time
from collections.abc import Iterator
from http.cookiejar import CookieJar
from urllib.error import URLError
from urllib.parse import urlencode
from urllib.request import HTTPCookieProcessor, build_opener

import pytest

from app import PROJECT_ROOT
from tests.helpers import CSRF
from tests.scratch import scratch_database
from tests.smtp import SmtpServer, free_port

pytestmark = pytest.mark.slow

STARTUP = 60  # seconds for migrations, gunicorn's workers and the first answer
STOPPING = 20  # seconds for every process to end after SIGTERM


def _wait_for(check, seconds: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.25)
    raise AssertionError(f"waited {seconds} s for {what}")


@pytest.fixture
def fresh_database_url() -> Iterator[str]:
    """An empty database for `make serve` to migrate, of its own name (tests/scratch.py)."""
    with scratch_database("optin_serve", os.environ.get("TEST_DATABASE_URL")) as url:
        yield url


@pytest.fixture
def redis_url(tmp_path) -> Iterator[str]:
    """A Redis server of this test's own on a free loopback port, keeping nothing on disk."""
    port = free_port()
    server = subprocess.Popen(
        [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        _wait_for(
            lambda: (
                subprocess.run(
                    ["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True
                ).stdout.strip()
                == "PONG"
            ),
            10,
            "redis-server",
        )
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(10)


def test_make_serve_runs_web_worker_and_upkeep_and_the_worker_delivers_the_confirmation(
    tmp_path, fresh_database_url: str, redis_url: str
) -> None:
    smtp = SmtpServer().start()
    port = free_port()
    inbound_port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DATABASE_URL": fresh_database_url,
        "RATELIMIT_STORAGE_URI": redis_url,
        "SECRET_KEY": "one key for every process",
        "BASE_URL": base,
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "OUTBOX_WORKERS": "1",
        "MAIL_BACKEND": "smtp",
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": str(smtp.port),
        "OPTIN_INSTANCE_PATH": str(tmp_path / "instance"),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
        "INBOUND_PORT": str(inbound_port),
        "UNSUBSCRIBE_MAILTO": "unsubscribe@served.test",
    }
    env.pop("TEST_DATABASE_URL", None)
    log = open(tmp_path / "serve.log", "w+")  # noqa: SIM115  (read after the processes end)
    serve = subprocess.Popen(
        ["make", "--no-print-directory", "serve"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: make, honcho and every process it runs
    )
    browser = build_opener(HTTPCookieProcessor(CookieJar()))

    def get(path: str) -> tuple[int, str]:
        try:
            with browser.open(base + path, timeout=10) as answer:
                return answer.status, answer.read().decode()
        except (URLError, TimeoutError):
            # Refused before gunicorn listens; a timeout while its workers still boot (a loaded
            # machine takes over 10 s to import the app in six processes at once): not up yet.
            return 0, ""

    try:
        _wait_for(lambda: get("/readyz")[0] == 200, STARTUP, "/readyz")
        subprocess.run(
            [
                os.path.join(PROJECT_ROOT, ".venv/bin/flask"),
                "--app",
                "app",
                "resources",
                "add",
                "newsletter",
                "--name",
                "The Newsletter",
            ],
            cwd=PROJECT_ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
        status, page = get("/subscribe/newsletter")
        assert status == 200
        token = CSRF.search(page).group(1)  # type: ignore[union-attr]
        form = urlencode({"csrf_token": token, "email": "served@example.com", "name": ""})
        with browser.open(base + "/subscribe/newsletter", form.encode(), timeout=10) as answer:
            assert answer.status == 200

        (message,) = _wait_for(
            lambda: [m for m in smtp.messages if m["To"] == "served@example.com"],
            30,
            "the confirmation email",
        )
        assert f"{base}/confirm/" in message.get_body(("plain",)).get_content()

        # The web process never sends (OUTBOX_DELIVER_INLINE=false): the worker did, and its
        # counter shows on the web's /metrics, added up across processes. The worker counts a
        # message once the mail server has answered its QUIT, a moment after the server has the
        # message: the scrape waits for it rather than racing it.
        def counted() -> str | None:
            status, metrics = get("/metrics")
            assert status == 200
            delivered = re.search(r"^optin_mail_deliveries_total 1\.0$", metrics, re.MULTILINE)
            return metrics if delivered else None

        metrics = _wait_for(counted, 10, "optin_mail_deliveries_total 1.0 on /metrics")
        assert 'route="/subscribe/<slug>"' in metrics

        # The inbound receiver is up, taking mail for the unsubscribe address and nothing else.
        def inbound_answers() -> tuple[int, int] | None:
            try:
                with smtplib.SMTP("127.0.0.1", inbound_port, timeout=10) as client:
                    client.ehlo()
                    client.mail("served@example.com")
                    return client.rcpt("unsubscribe@served.test")[0], client.rcpt("x@served.test")[
                        0
                    ]
            except OSError:
                return None

        assert _wait_for(inbound_answers, STARTUP, "flask inbound") == (250, 550)
    finally:
        os.killpg(serve.pid, signal.SIGTERM)
        try:
            serve.wait(STOPPING)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait()
            raise AssertionError(f"make serve did not stop within {STOPPING} s") from None
        finally:
            smtp.stop()
            log.seek(0)
            output = log.read()
            log.close()
    # Every process of the group has ended.
    with pytest.raises(ProcessLookupError):
        os.killpg(serve.pid, 0)
    for process in ("web.1", "worker.1", "upkeep.1", "inbound.1"):
        assert re.search(rf"^\S+ system +\| {re.escape(process)} started", output, re.M), output
        assert re.search(rf"^\S+ system +\| {re.escape(process)} stopped", output, re.M), output
    # The worker process is the one that sent it.
    assert re.search(r"^\S+ worker\.1 +\| sent 1, failed 0", output, re.M), output
    assert "Traceback" not in output, output
