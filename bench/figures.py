"""The benchmark figures: ``saelab bench report --html PAGE`` draws ``bench/results/*.json``.

The Markdown page (``docs/results.md``) holds the tables; what reads better as a picture
is drawn here, one plotly section per results file that has a drawer in ``DRAWERS``:
training throughput and peak memory per library, and how both grow with d_sae and k.
Laid out by ``evals.report.render`` (plotly.js inlined: the page opens offline).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from sae.report import Section, Table

#: a training side's key prefix in the results rows → its label
SIDES = {
    "saelab": "saelab (fused sparse)",
    "saelab_dense": "saelab (dense reference)",
    "saelens": "SAELens",
    "sparsify": "sparsify",
    "dictionary_learning": "dictionary_learning",
}


def _sides(rows: list[dict]) -> list[str]:
    return [s for s in SIDES if any(f"{s}_tokens_per_s" in r for r in rows)]


def _by_axis(rows: list[dict], axis: str, metric: str, title: str, y_title: str):
    import plotly.graph_objects as go

    fig = go.Figure()
    points = sorted((r for r in rows if r.get("axis", "d_sae") == axis), key=lambda r: r[axis])
    for side in _sides(points):
        have = [r for r in points if f"{side}_{metric}" in r]
        x, y = [r[axis] for r in have], [r[f"{side}_{metric}"] for r in have]
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=SIDES[side]))
    fig.update_layout(title=title, xaxis_title=axis, yaxis_title=y_title, height=380)
    fig.update_xaxes(type="log", tickvals=[r[axis] for r in points])
    fig.update_yaxes(type="log")
    return fig


def _step_table(rows: list[dict], caption: str) -> Table:
    sides = _sides(rows)
    columns = ["axis", "d_sae", "k", *(f"{s}_tokens_per_s" for s in sides), "step_over_encoder_gemm"]
    columns += [f"speedup_vs_{s}" for s in sides if s not in ("saelab", "saelab_dense")]
    columns += [f"{s}_peak_rss_mib" for s in sides]
    return Table(caption, [c for c in columns if any(c in r for r in rows)], rows)


def train_section(doc: dict) -> Section:
    rows = doc["result"]
    return Section(
        title="Training step: every library on the same batches",
        intro="TopK training tokens/s and peak RSS per library (each in its own process), by d_sae.",
        figures=[
            _by_axis(rows, "d_sae", "tokens_per_s", "Training tokens/s", "tokens/s"),
            _by_axis(rows, "d_sae", "peak_rss_mib", "Peak RSS of the training process", "MiB"),
        ],
        tables=[_step_table(rows, "bench/results/train.json")],
    )


def scaling_section(doc: dict) -> Section:
    rows = doc["result"]
    ks = sorted({r["k"] for r in rows if r["axis"] == "d_sae"})
    d_saes = sorted({r["d_sae"] for r in rows if r["axis"] == "k"})
    return Section(
        title="Scaling: cost against d_sae and k",
        intro=f"Along d_sae at k {ks}, and along k at d_sae {d_saes}; log-log, so a slope is an exponent.",
        figures=[
            _by_axis(rows, "d_sae", "tokens_per_s", "Tokens/s as d_sae grows", "tokens/s"),
            _by_axis(rows, "d_sae", "peak_rss_mib", "Peak RSS as d_sae grows", "MiB"),
            _by_axis(rows, "k", "tokens_per_s", "Tokens/s as k grows", "tokens/s"),
            _by_axis(rows, "k", "peak_rss_mib", "Peak RSS as k grows", "MiB"),
        ],
        tables=[_step_table(rows, "bench/results/scaling.json")],
    )


DRAWERS: dict[str, Callable[[dict], Section]] = {"train": train_section, "scaling": scaling_section}


def sections(results_dir: Path) -> list[Section]:
    """One section per results file with a drawer (``NAME.json`` and ``NAME_cuda.json`` alike)."""
    out = []
    for path in sorted(results_dir.glob("*.json")):
        draw = DRAWERS.get(path.stem.removesuffix("_cuda"))
        if draw is None:
            continue
        section = draw(json.loads(path.read_text(encoding="utf-8")))
        if path.stem.endswith("_cuda"):
            section.title += " (GPU)"
        out.append(section)
    return out


def write_page(results_dir: Path, target: Path) -> Path:
    """The HTML page of every drawn results file, written atomically."""
    from evals.report import render
    from sae.atomic import write_text
    from sae.errors import SaelabError

    found = sections(results_dir)
    if not found:
        raise SaelabError(f"{results_dir}: no results file to draw ({', '.join(f'{n}.json' for n in DRAWERS)})")
    write_text(target, render(found, "saelab benchmarks"))
    return target
