"""Circuits: layer × head score heatmaps with the ground truth, ROC curves and runtimes,
from the circuit-discovery results (``kind: circuit``) in the run directories."""

from __future__ import annotations

import streamlit as st

from app.common import results_page

st.set_page_config(page_title="Circuits", layout="wide")
st.title("Circuits")
#: shown when no run directory holds circuit results; a test parses the command with saelab's own parser
EMPTY = "No circuit results (kind: circuit) here; `saelab circuit ioi --out RUN_DIR/circuit_ioi.json` writes one."
results_page("circuit", EMPTY)
