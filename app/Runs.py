"""Runs: the SAEs of each run directory, their held-out metrics and the evaluation Pareto plots."""

from __future__ import annotations

import streamlit as st

from app.common import all_saes, render_sections, results, run_dirs
from app.dashboard_data import has_dashboard
from app.run_dir import model_name

st.set_page_config(page_title="saelab explorer", layout="wide")
st.title("Runs")
saes = all_saes()
if saes:
    st.dataframe(
        [
            {
                "SAE": s.name,
                "architecture": s.architecture,
                "hook": s.hook,
                "model": model_name(s),
                "latents": s.d_sae,
                "dashboard": "built" if has_dashboard(s.path) else "not built",
                "directory": str(s.path),
            }
            for s in saes
        ]
    )
    sweeps, evals = results("sweep"), results("eval")
    if sweeps:
        render_sections("sweep", sweeps)
    if evals:
        render_sections("eval", evals)
    if not sweeps and not evals:
        st.info(
            "No sweep_summary.json or evaluation results.json (kind: sweep / eval) in "
            + ", ".join(str(d) for d in run_dirs())
            + "."
        )
