"""The report shell: results found by kind, sections laid out in order, one self-contained page."""

from __future__ import annotations

import json

import plotly.graph_objects as go
import pytest

from evals import report
from sae.errors import SaelabError


def test_sections_come_from_results_files_by_kind(tmp_path, monkeypatch):
    (tmp_path / "a.json").write_text(json.dumps({"kind": "alpha", "schema_version": 1, "value": 0.25}))
    (tmp_path / "b.json").write_text(json.dumps({"kind": "beta", "schema_version": 1, "value": 2}))
    (tmp_path / "notes.json").write_text("[1, 2]")  # JSON but not a results file: ignored
    (tmp_path / "broken.json").write_text("{")  # not JSON: ignored

    def alpha(results):
        fig = go.Figure(go.Bar(x=["x"], y=[r["value"] for r in results]))
        return report.Section(
            "Alpha <results>", figures=[fig], tables=[report.Table("values", ["value", "missing"], results)]
        )

    def beta(results):
        return report.Section("Beta", notes=[f"{len(results)} result"])

    monkeypatch.setattr(report, "SECTION_BUILDERS", {"beta": beta, "alpha": alpha, "gamma": "no.such:module"})
    page = report.build_report(tmp_path, title="t").read_text()
    assert page.count("<section") == 2  # gamma has no results, so its builder is never imported
    assert page.index("Beta") < page.index("Alpha &lt;results&gt;")  # the builders' order; titles escaped
    assert "<td>0.25</td><td>–</td>" in page  # a missing cell is shown as such
    assert "1 result" in page
    assert "<script src=" not in page and "Plotly.newPlot" in page  # self-contained: plotly.js inlined


def test_a_directory_without_results_is_one_clear_error(tmp_path):
    with pytest.raises(SaelabError, match="no results files"):
        report.build_report(tmp_path)
