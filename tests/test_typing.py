"""The type checker that ``make lint`` runs stands guard over the provider registry: a provider
module that lacks one of the functions the webhook view calls, or takes other arguments, fails
the check instead of a provider's request. Each test checks a small provider module of its own
against ``app.services.providers.Provider`` with the project's mypy settings."""

from __future__ import annotations

import os
import subprocess  # nosec B404: runs this interpreter's mypy on files the test writes
import sys
from pathlib import Path

import pytest

# Each test runs mypy in a process of its own (seconds apiece): make lint checks app/ anyway.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent

HEAD = """\
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.services.events import IncomingEvent
from app.services.providers import WebhookRequest
"""

VERIFY = """
def verify(data: WebhookRequest, config: Mapping[str, Any]) -> None:
    return None
"""

EVENTS = """
def events(data: WebhookRequest, config: Mapping[str, Any]) -> list[IncomingEvent]:
    return []
"""

# The registry holds its modules as Providers; this does the same with the new one.
WIRING = """\
from app.services.providers import Provider
import new_provider

providers: dict[str, Provider] = {"new": new_provider}
provider: Provider = new_provider
"""


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for this module's runs: the first reads app/ (seconds), the others reuse it."""
    return tmp_path_factory.mktemp("mypy-cache")


def type_check(
    tmp_path: Path, mypy_cache: Path, provider_source: str
) -> subprocess.CompletedProcess[str]:
    """mypy, with the settings of ``make lint``, over a new provider module and its wiring. Only
    these two files' errors are reported (``--follow-imports=silent``), so the answer is about
    the new provider, whatever the state of the rest of app/."""
    (tmp_path / "new_provider.py").write_text(provider_source)
    (tmp_path / "wiring.py").write_text(WIRING)
    return subprocess.run(  # nosec B603: a fixed command line, no shell
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--follow-imports=silent",
            "--cache-dir",
            str(mypy_cache),
            str(tmp_path / "new_provider.py"),
            str(tmp_path / "wiring.py"),
        ],
        cwd=ROOT,
        env={**os.environ, "MYPYPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_provider_with_both_functions_passes_the_type_check(
    tmp_path: Path, mypy_cache: Path
) -> None:
    checked = type_check(tmp_path, mypy_cache, HEAD + VERIFY + EVENTS)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_provider_missing_its_events_function_fails_the_type_check(
    tmp_path: Path, mypy_cache: Path
) -> None:
    checked = type_check(tmp_path, mypy_cache, HEAD + VERIFY)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert 'variable has type "Provider"' in checked.stdout
    assert "missing following" in checked.stdout
    assert "    events" in checked.stdout


@pytest.mark.parametrize(
    "wrong",
    [
        # The config as a second positional argument forgotten.
        "\ndef events(data: WebhookRequest) -> list[IncomingEvent]:\n    return []\n",
        # The request's raw body instead of the WebhookRequest.
        "\ndef events(data: bytes, config: Mapping[str, Any]) -> list[IncomingEvent]:\n"
        "    return []\n",
    ],
    ids=["missing-argument", "wrong-argument-type"],
)
def test_a_provider_whose_events_takes_other_arguments_fails_the_type_check(
    tmp_path: Path, mypy_cache: Path, wrong: str
) -> None:
    checked = type_check(tmp_path, mypy_cache, HEAD + VERIFY + wrong)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert 'variable has type "Provider"' in checked.stdout
