"""Supervised evaluations: the supervised-dictionary tables and plots (``kind: supervised``)."""

from __future__ import annotations

import streamlit as st

from app.common import results_page

st.set_page_config(page_title="Supervised", layout="wide")
st.title("Supervised evaluations")
results_page("supervised", "No supervised-dictionary results (kind: supervised) here.")
