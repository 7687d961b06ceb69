"""Where the page checkers are: the Nu HTML Checker (``vnu.jar``, run by Java) and axe-core,
both from the npm packages that ``make checkers`` installs into node_modules/ (package.json
pins their versions, package-lock.json their checksums).

A test that needs a checker skips and says why when it is not installed, unless
REQUIRE_CHECKERS is set (as .ci/run does), where it fails instead.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import NoReturn

import pytest

NODE_MODULES = Path(__file__).resolve().parent.parent / "node_modules"
VNU_JAR = NODE_MODULES / "vnu-jar" / "build" / "dist" / "vnu.jar"
AXE_JS = NODE_MODULES / "axe-core" / "axe.min.js"


def missing(reason: str) -> NoReturn:
    """Skip the test for ``reason``, or fail it where the checkers are required."""
    if os.environ.get("REQUIRE_CHECKERS"):
        pytest.fail(reason)
    pytest.skip(reason)


def vnu_command() -> list[str]:
    """The command line that starts the Nu HTML Checker."""
    java = shutil.which("java")
    if java is None:
        missing("no java on PATH for the Nu HTML Checker (apt-get install default-jre-headless)")
    if not VNU_JAR.exists():
        missing(f"the Nu HTML Checker is not installed at {VNU_JAR}: run `make checkers`")
    return [java, "-jar", str(VNU_JAR)]


def axe_source() -> str:
    """axe-core's script, to evaluate in a page."""
    if not AXE_JS.exists():
        missing(f"axe-core is not installed at {AXE_JS}: run `make checkers`")
    return AXE_JS.read_text(encoding="utf-8")
