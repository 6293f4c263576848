"""The HTML report: one self-contained page built from every results file in a directory.

Every measuring command writes JSON results carrying a ``kind``. The report does not know
what any command measured: it asks the builder registered for each ``kind`` for a
``Section`` (figures, tables, notes; ``sae.report``, so that layers below ``evals`` can
build one too) and lays the sections out in a fixed order. So a new
evaluation adds one builder here and needs no other change, and running several
commands into one ``--out`` directory gives one report with all of their sections.

The page embeds plotly.js once (no CDN: it must open on a machine with no network).
"""

from __future__ import annotations

import html
import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sae.atomic import write_text
from sae.errors import SaelabError
from sae.report import Section, Table

__all__ = ["REPORT", "SECTION_BUILDERS", "Section", "Table", "build_report", "find_results", "render"]

REPORT = "report.html"

#: results ``kind`` → "module:function" building a Section (or a list of Sections) from the
#: list of results of that kind found in the directory; the order here is the order of the report.
SECTION_BUILDERS: dict[str, str | Callable[[list[dict]], Section | list[Section]]] = {
    "sweep": "evals.sections:sweep_section",
    "eval": "evals.sections:eval_section",
    "circuit": "circuits.report:circuit_section",
    "supervised": "evals.supervised.report:supervised_section",
    "saebench_core": "evals.saebench.sections:core_section",
    "saebench_sparse_probing": "evals.saebench.sections:sparse_probing_section",
    "saebench_absorption": "evals.saebench.sections:absorption_section",
    "saebench_scr": "evals.saebench.sections:scr_section",
    "saebench_tpp": "evals.saebench.sections:tpp_section",
    "saebench_ravel": "evals.saebench.sections:ravel_section",
    "saebench_autointerp": "evals.saebench.sections:autointerp_section",
    "saebench_summary": "evals.saebench.sections:summary_section",
}


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if value is None:
        return "–"
    return html.escape(str(value))


def _table_html(table: Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(row.get(c))}</td>" for c in table.columns) + "</tr>" for row in table.rows
    )
    return (
        f'<div class="table-wrap"><table><caption>{html.escape(table.caption)}</caption>'
        f"<thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table></div>"
    )


def render(sections: list[Section], title: str) -> str:
    """The whole page as one string (plotly.js inlined once, in the head)."""
    from plotly.offline import get_plotlyjs

    parts = []
    for i, section in enumerate(sections):
        parts.append(f'<section id="s{i}"><h2>{html.escape(section.title)}</h2>')
        if section.intro:
            parts.append(f"<p>{html.escape(section.intro)}</p>")
        for fig in section.figures:
            parts.append('<div class="figure">' + fig.to_html(full_html=False, include_plotlyjs=False) + "</div>")
        for table in section.tables:
            parts.append(_table_html(table))
        for note in section.notes:
            parts.append(f'<p class="note">{html.escape(note)}</p>')
        parts.append("</section>")
    toc = "".join(f'<li><a href="#s{i}">{html.escape(s.title)}</a></li>' for i, s in enumerate(sections))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<script type="text/javascript">{get_plotlyjs()}</script>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
th {{ background: #f3f3f3; }} caption {{ text-align: left; font-weight: bold; padding: 0.3em 0; }}
.note {{ color: #555; font-size: 0.9em; }} .figure {{ margin: 1em 0; }}
.table-wrap {{ overflow-x: auto; max-width: 100%; }}
</style></head>
<body><h1>{html.escape(title)}</h1><ul>{toc}</ul>
{"".join(parts)}
</body></html>
"""


def find_results(directory: str | Path) -> dict[str, list[dict]]:
    """Results files directly under ``directory`` (``*.json`` with a ``kind``), grouped by kind."""
    found: dict[str, list[dict]] = {}
    for path in sorted(Path(directory).glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, OSError):
            continue  # not a results file
        if isinstance(data, dict) and isinstance(data.get("kind"), str):
            data.setdefault("_file", path.name)
            found.setdefault(data["kind"], []).append(data)
    return found


def _builder(kind: str) -> Callable[[list[dict]], Section | list[Section]]:
    builder = SECTION_BUILDERS[kind]
    if callable(builder):
        return builder
    module, _, name = builder.partition(":")
    return getattr(importlib.import_module(module), name)


def build_report(directory: str | Path, title: str = "saelab report") -> Path:
    """(Re)write ``directory/report.html`` from every results file there; returns its path."""
    directory = Path(directory)
    found = find_results(directory)
    sections = []
    for kind in SECTION_BUILDERS:
        if kind in found:
            built = _builder(kind)(found[kind])
            sections.extend(built if isinstance(built, list) else [built])
    if not sections:
        raise SaelabError(f"{directory}: no results files to report on")
    path = directory / REPORT
    write_text(path, render(sections, title))
    return path
