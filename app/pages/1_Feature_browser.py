"""Feature browser: every feature of one SAE as a sortable table, filtered by id, density,
top token, top logit or any text in its tokens."""

from __future__ import annotations

import streamlit as st

from app.common import all_saes, feature_link, features, pick_sae

st.set_page_config(page_title="Feature browser", layout="wide")
st.title("Feature browser")
entry = pick_sae(all_saes(), need_dashboard=True)
if entry is not None:
    df = features(entry)
    c1, c2, c3 = st.columns(3)
    ids = c1.text_input("Feature ids (e.g. 3, 10-20)", "")
    lo, hi = c2.slider("log10 density", -8.0, 0.0, (-8.0, 0.0), 0.1)
    query = c3.text_input("Text (top token, top logit or any logit token)", "")
    wanted_cols = ("feature", "density", "log10_density", "max_act", "mean_act", "top_token", "top_logit")
    cols = [c for c in wanted_cols if c in df]
    view = df[cols + (["pos_tokens"] if "pos_tokens" in df else [])].copy()
    view["log10_density"] = view["log10_density"].clip(lower=-8.0)
    keep = (view.log10_density >= lo) & (view.log10_density <= hi)
    if ids.strip():
        wanted: set[int] = set()
        for part in ids.replace(" ", "").split(","):
            if "-" in part[1:]:
                a, b = part.split("-", 1)
                wanted.update(range(int(a), int(b) + 1)) if a.isdigit() and b.isdigit() else None
            elif part.isdigit():
                wanted.add(int(part))
        keep &= view.feature.isin(wanted)
    if query.strip():
        q = query.strip().lower()
        text = view.top_token.fillna("").str.lower()
        if "pos_tokens" in view:
            text = text + " " + view.pos_tokens.map(lambda t: " ".join(t).lower())
        keep &= text.str.contains(q, regex=False)
    cols = [c for c in cols if c != "log10_density"]
    shown = view.loc[keep, cols].sort_values("density", ascending=False)
    st.caption(
        f"{len(shown)} of {len(df)} features; click a column to sort. "
        f"Open one in the Feature dashboard page (?sae={entry.name}&feature=ID)."
    )
    st.dataframe(shown, hide_index=True)
    pick = st.number_input("Open feature", 0, len(df) - 1, int(shown.feature.iloc[0]) if len(shown) else 0)
    feature_link(entry.name, pick)
