"""Circuits: layer × head score heatmaps with the ground truth, ROC curves and runtimes,
from the circuit-discovery results (``kind: circuit``) in the run directories."""

from __future__ import annotations

import streamlit as st

from app.common import existing_run_dirs, render_sections, results

st.set_page_config(page_title="Circuits", layout="wide")
st.title("Circuits")
if existing_run_dirs():
    docs = results("circuit")
    if docs:
        render_sections("circuit", docs)
    else:
        st.info("No circuit results (kind: circuit) here; `saelab circuits ... --out DIR` writes them.")
