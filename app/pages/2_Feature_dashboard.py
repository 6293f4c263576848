"""Feature dashboard: one feature's records (contexts highlighted by activation, histogram,
logit effects, neighbours, per-head attribution)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from app.common import all_saes, feature_url, features, highlight, pick_sae
from app.dashboard_data import read_contexts
from sae.errors import SaelabError

st.set_page_config(page_title="Feature dashboard", layout="wide")
st.title("Feature dashboard")
entry = pick_sae(all_saes(), need_dashboard=True)
if entry is not None:
    df = features(entry)
    try:
        start = int(st.query_params.get("feature", 0))
    except ValueError:
        start = 0
    feature = int(st.number_input("Feature", 0, len(df) - 1, min(max(start, 0), len(df) - 1), key="feature_id"))
    st.query_params["feature"] = str(feature)
    row = df.iloc[feature]
    m = st.columns(4)
    m[0].metric("density", f"{row.density:.3%}")
    m[1].metric("max activation", f"{row.max_act:.3g}")
    m[2].metric("mean (when active)", f"{row.mean_act:.3g}")
    m[3].metric("top token", str(row.top_token) if row.top_token is not None else "—")
    if row["count"] == 0:
        st.warning("This feature never fired on the dashboard text (dead here).")
    try:
        ctx = read_contexts(entry.path, feature)
    except SaelabError as e:
        st.error(str(e))
        ctx = None
    left, right = st.columns([3, 2])
    with left:
        if ctx is not None and len(ctx):
            st.subheader("Top activations")
            for _, c in ctx[ctx.group == "top"].sort_values("rank").iterrows():
                st.markdown(
                    f"`{c.value:.3f}` " + highlight(list(c.tokens), c.acts, int(c.centre), row.max_act),
                    unsafe_allow_html=True,
                )
            inter = ctx[ctx.group == "interval"]
            for i in sorted(inter.interval.unique(), reverse=True):
                part = inter[inter.interval == i].sort_values("rank")
                first = part.iloc[0]
                st.subheader(f"Interval ({first.lo:.3g}, {first.hi:.3g}]")
                st.caption(
                    f"{first.share:.1%} of a uniform sample of {int(first.sample_size)} nonzero activations "
                    "lie in this equal-width interval (intervals, not quantiles)"
                )
                for _, c in part.iterrows():
                    st.markdown(
                        f"`{c.value:.3f}` " + highlight(list(c.tokens), c.acts, int(c.centre), row.max_act),
                        unsafe_allow_html=True,
                    )
    with right:
        counts = np.asarray(row.hist_counts)
        edges = np.linspace(0, float(row.hist_range), len(counts) + 1)
        fig = go.Figure(
            go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=edges[1] - edges[0], marker_color="#ff8c00")
        )
        fig.update_layout(
            title=f"Activation histogram ({row['count']} nonzero)",
            height=280,
            xaxis_title="activation",
            yaxis_title="count",
            margin={"t": 40, "b": 30},
        )
        st.plotly_chart(fig, key="hist")
        if "pos_tokens" in df:
            st.subheader("Logit effects")
            st.dataframe(
                {
                    "top token": list(row.pos_tokens),
                    "logit": np.round(row.pos_values, 4),
                    "bottom token": list(row.neg_tokens),
                    "logit ": np.round(row.neg_values, 4),
                },
                hide_index=True,
            )
            if "logit_hist_heights" in df and row.logit_hist_heights is not None:
                lfig = go.Figure(
                    go.Bar(
                        x=np.asarray(row.logit_hist_values), y=np.asarray(row.logit_hist_heights), marker_color="#888"
                    )
                )
                lfig.update_layout(
                    title="Logit effects over the vocabulary (W_dec·W_U)",
                    height=250,
                    xaxis_title="logit",
                    yaxis_title="tokens",
                    margin={"t": 40, "b": 30},
                )
                st.plotly_chart(lfig, key="logit_hist")
        else:
            st.caption("No logit effects: this hook has no linear path to the residual stream.")
        if "corr_feat_ids" in df and row.corr_feat_ids is not None:
            st.subheader("Correlated features")
            st.caption("Pearson and cosine of the activations over the build's first positions (as SAEDashboard)")
            ids = [int(i) for i in row.corr_feat_ids]
            st.dataframe(
                {
                    "feature": ids,
                    "pearson": np.round(row.corr_feat_pearson, 3),
                    "cosine": np.round(row.corr_feat_cos, 3),
                    "top token": [df.top_token.iloc[i] for i in ids],
                },
                hide_index=True,
            )
            st.markdown("Open: " + " · ".join(f"[{i}]({feature_url(entry.name, i)})" for i in ids))
        tables = {}
        if "corr_neuron_ids" in df and row.corr_neuron_ids is not None:
            tables["correlated neuron"] = [int(i) for i in row.corr_neuron_ids]
            tables["pearson"] = np.round(row.corr_neuron_pearson, 3)
        if "align_ids" in df and row.align_ids is not None:
            tables["aligned neuron"] = [int(i) for i in row.align_ids]
            tables["W_dec value"] = np.round(row.align_values, 3)
            tables["share of |W_dec|₁"] = np.round(row.align_l1, 3)
        if tables:
            st.subheader("Neurons (coordinates of the hooked activation)")
            st.dataframe(tables, hide_index=True)
        if "head_shares" in df and row.head_shares is not None:
            shares = np.asarray(row.head_shares)
            hfig = go.Figure(go.Bar(x=[f"head {h}" for h in range(len(shares))], y=shares))
            hfig.update_layout(title="Per-head attribution (decoder-norm share)", height=250, margin={"t": 40, "b": 30})
            st.plotly_chart(hfig, key="heads")
        st.subheader("Decoder-cosine neighbours")
        st.dataframe(
            {
                "feature": list(row.neighbours),
                "cosine": np.round(row.neighbour_cos, 4),
                "top token": [df.top_token.iloc[int(n)] for n in row.neighbours],
            },
            hide_index=True,
        )
        st.markdown("Open: " + " · ".join(f"[{int(n)}]({feature_url(entry.name, int(n))})" for n in row.neighbours))
