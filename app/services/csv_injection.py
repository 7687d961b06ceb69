"""The CSV-injection guard (OWASP), shared by the export that adds it and the import that takes
it off again, so that an exported file imports as it was.

A spreadsheet reads a cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return as a formula; a file meant for people gets a ``'`` before such a cell, which the
spreadsheet shows as text.
"""

from __future__ import annotations

# Characters that make a spreadsheet read a cell as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _formula_like(value: str) -> bool:
    # Quotes before a formula character count too: ``'=x`` must survive the way there and back.
    return value.lstrip("'").startswith(FORMULA_STARTS)


def spreadsheet_safe(value: object) -> object:
    """A cell that a spreadsheet will show as text, never run as a formula. A cell that looks
    guarded already (``'=x``, a name someone typed so) is quoted too, or the import would take
    that quote off."""
    if isinstance(value, str) and _formula_like(value):
        return "'" + value
    return value


def unquoted(value: str) -> str:
    """A cell as it was before ``spreadsheet_safe``: the quote it put before a formula-like
    cell is not part of the value."""
    if value[:1] == "'" and _formula_like(value):
        return value[1:]
    return value
