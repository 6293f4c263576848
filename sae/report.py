"""The vocabulary of the HTML report: a ``Section`` of figures, ``Table``s and notes.

Plain data, no rendering. Every layer that measures something describes its section of
the report with these (``circuits.report``, ``evals.sections``, ...), and
``evals.report`` lays the sections out as one page. They live at the bottom of the lab so
that a layer below ``evals`` can describe its section without importing ``evals``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Table:
    """Rows of a table; ``columns`` fixes the order (and the subset) of the keys shown."""

    caption: str
    columns: list[str]
    rows: list[dict[str, Any]]


@dataclass
class Section:
    title: str
    intro: str = ""
    figures: list = field(default_factory=list)  # plotly Figures
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
