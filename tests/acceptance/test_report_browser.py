"""Slow tier: the eval report renders in headless Chromium with its plots drawn."""

from __future__ import annotations

import shutil

import pytest
from browser import png_pixels, render

pytestmark = pytest.mark.slow


@pytest.mark.timeout(1800)
def test_report_renders_with_plots(tiny_results, tmp_path):
    _, out = tiny_results
    html = out / "report.html"
    dom, shot = render(html, tmp_path / "chromium")
    n_divs = dom.count('class="plotly-graph-div')
    # plotly.js ran: every figure div now holds an SVG main plot
    assert n_divs >= 6
    assert dom.count('class="main-svg"') >= n_divs
    assert "Splice check" in dom and "Attention-output SAEs" in dom
    pixels = png_pixels(shot)
    assert pixels.shape[1] == 1280
    colourful = ((pixels.max(-1).astype(int) - pixels.min(-1).astype(int)) > 60).mean()
    assert colourful > 0.003, f"only {colourful:.4%} of the screenshot is coloured: the plots did not draw"
    keep = out / "report_screenshot.png"
    shutil.copy(shot, keep)  # left next to the report for a person to look at
