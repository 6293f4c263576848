"""Supervised evaluations: the supervised-dictionary tables and plots (``kind: supervised``)."""

from __future__ import annotations

import streamlit as st

from app.common import existing_run_dirs, render_sections, results

st.set_page_config(page_title="Supervised", layout="wide")
st.title("Supervised evaluations")
if existing_run_dirs():
    docs = results("supervised")
    if docs:
        render_sections("supervised", docs)
    else:
        st.info("No supervised-dictionary results (kind: supervised) here.")
