"""Stand-ins for the values a kept rendering leaves out, and the check that they came through.

A page or an email that is the same for many people but for a value or two is rendered once with
a stand-in for each such value, kept, and copied with each person's values put in
(app/views/page_cache.py, app/kept_emails.py). A copy may be kept only if the template showed
each stand-in as it went in: a filter that changed one (``upper``, ``truncate``) would have
changed the real value too, and left a mangled stand-in that no real value replaces.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping


class StandIns:
    """The stand-ins of one kind of kept rendering. They are random for each process, so no
    content (a resource's name, an address) can contain one."""

    def __init__(self, kind: str) -> None:
        self._slot = f"{kind}-slot-{secrets.token_hex(16)}"

    def of(self, name: str) -> str:
        return f"{self._slot}-{name}-"

    def for_names(self, names: Iterable[str]) -> dict[str, str]:
        """A stand-in for each of ``names``, to render with in their place."""
        return {name: self.of(name) for name in names}

    def came_through(self, stand_ins: Mapping[str, str], renderings: Iterable[str]) -> bool:
        """Whether ``renderings`` show the stand-ins, if at all, as they went in: no filter
        changed one (not even its case), which would have changed the real value too."""
        for rendering in renderings:
            whole = sum(rendering.count(stand_in) for stand_in in stand_ins.values())
            if rendering.lower().count(self._slot) != whole:
                return False
        return True

    def put_in(self, rendering: str, values: Mapping[str, str]) -> str:
        """``rendering`` with each stand-in replaced by its value (escaped as the template would
        have escaped it: that is the caller's to do)."""
        for name, value in values.items():
            rendering = rendering.replace(self.of(name), value)
        return rendering
