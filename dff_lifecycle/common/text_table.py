"""Plain-text tables for terminals and logs: left-aligned columns, a rule under the header."""
from __future__ import annotations

from typing import Sequence


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]], rule: bool = True) -> str:
    """
    Return the table as text: columns padded to their widest cell, two spaces apart.

    Trailing spaces are trimmed; with `rule`, a line of dashes goes under the header.
    """
    table = [tuple(header), *(tuple(str(c) for c in r) for r in rows)]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return '  '.join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    head = [line(table[0])] + ([line(['-' * w for w in widths])] if rule else [])
    return '\n'.join([*head, *(line(r) for r in table[1:])])
