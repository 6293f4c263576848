"""Feature dashboard: one feature's records (contexts highlighted by activation, histograms,
logit effects, correlated features and neurons, neighbours, per-head attribution), its
autointerp explanation and its place in saved circuits and graphs (read), and the per-token
loss effect of ablating it on its top contexts (computed on demand, cached)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from app.common import (
    all_saes,
    explanations,
    feature_url,
    features,
    highlight,
    load_sae_cached,
    model_and_tokenizer,
    pick_sae,
    run_dirs,
)
from app.dashboard_data import read_contexts
from app.feature_places import feature_places
from app.run_dir import model_name
from sae.errors import SaelabError


@st.cache_data(show_spinner="Ablating the feature on its top contexts…", max_entries=256)
def loss_effects(sae_path: str, model: str, feature: int, windows: tuple[tuple[str, ...], ...], mtime: float):
    """Per top context, the loss effect of ablating ``feature`` (``app.feature_effects``)."""
    from app.feature_effects import ablation_loss_effects, context_ids
    from sae.spliceable import SAE

    bridge, tok = model_and_tokenizer(model)
    sae = SAE.from_cfg(*load_sae_cached(sae_path))
    return ablation_loss_effects(bridge, tok, sae, feature, [context_ids(tok, list(w)) for w in windows])


def show_explanation(entry, feature: int) -> None:
    table, files = explanations(entry, run_dirs())
    hit = table[table.feature == feature] if len(table) else table
    if len(hit):
        r = hit.iloc[0]
        st.info(f"**Explanation:** {r.explanation}")
        scores = {k: v for k, v in r.items() if k not in ("feature", "explanation") and v == v}
        if scores:
            st.caption(" · ".join(f"{k}: {float(v):.3g}" for k, v in scores.items()) + f" (from {', '.join(files)})")
    elif files:
        st.caption(f"No explanation for this feature in {', '.join(files)}")


def show_places(entry, feature: int) -> None:
    places = feature_places(run_dirs(), entry.hook, entry.name, feature)
    st.subheader("In saved circuits and graphs")
    if not places:
        st.caption("This feature is in no feature-circuit result or graph in the run directories.")
    for p in places:
        st.caption(f"{p['kind']}{' · ' + str(p['task']) if p.get('task') else ''} · {p['file']}")
        st.dataframe(p["rows"], hide_index=True)


def show_loss_effects(entry, feature: int, top) -> None:
    st.subheader("Loss effect of ablating the feature")
    if not len(top):
        st.caption("No top contexts: nothing to ablate on.")
        return
    if not st.toggle("Compute (runs the model with the SAE spliced in)", value=True, key="loss_effect"):
        return
    windows = tuple(tuple(t) for t in top.tokens)
    cfg = entry.path / "cfg.json"
    try:
        effects = loss_effects(
            str(entry.path), model_name(entry), feature, windows, cfg.stat().st_mtime if cfg.exists() else 0.0
        )
    except Exception as e:  # a model or SAE that cannot be spliced: one line, the page goes on
        st.error(f"could not compute the loss effect: {type(e).__name__}: {str(e)[:200]}")
        return
    st.caption(
        "Δ next-token loss at each token when the feature's code is set to 0 (SAE spliced with its error term); "
        "blue: the feature helped predict the token, red: it hurt. Read from the stored window only."
    )
    scale = max([float(np.nanmax(np.abs(e))) for e in effects if np.isfinite(e).any()] + [1e-9])
    for (_, c), e in zip(top.iterrows(), effects, strict=True):
        toks = list(c.tokens)
        values = e[-len(toks) :] if len(e) >= len(toks) else np.r_[np.full(len(toks) - len(e), np.nan), e]
        st.markdown(f"`{c.value:.3f}` " + loss_html(toks, values, int(c.centre), scale), unsafe_allow_html=True)


def loss_html(tokens: list[str], values, centre: int, scale: float) -> str:
    import html

    spans = []
    for i, (t, v) in enumerate(zip(tokens, values, strict=True)):
        v = float(v)
        a = 0.0 if v != v else min(abs(v) / scale, 1.0)
        colour = f"rgba(30,100,255,{a:.2f})" if v < 0 else f"rgba(230,40,40,{a:.2f})"
        style = f"background:{colour}; padding:0 1px; border-radius:2px"
        if i == centre:
            style += "; border-bottom: 2px solid #333"
        title = "—" if v != v else f"{v:+.4f}"
        spans.append(f'<span title="{title}" style="{style}">{html.escape(t).replace(" ", "&nbsp;")}</span>')
    return "<span style='font-family:monospace'>" + "".join(spans) + "</span>"


st.set_page_config(page_title="Feature dashboard", layout="wide")
st.title("Feature dashboard")
entry = pick_sae(all_saes(), need_dashboard=True)
if entry is not None:
    df = features(entry)
    asked = st.query_params.get("feature", "0")
    try:
        start = int(asked)
    except ValueError:
        start = 0
        st.error(f"feature {asked!r} is not a feature index; showing feature 0")
    if not 0 <= start < len(df):
        st.error(f"feature {start} is out of range: this SAE has features 0 to {len(df) - 1}")
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
    show_explanation(entry, feature)
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
            show_loss_effects(entry, feature, ctx[ctx.group == "top"].sort_values("rank"))
        show_places(entry, feature)
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
        if "act_hist_heights" in df and row.act_hist_heights is not None and len(row.act_hist_heights):
            dfig = go.Figure(
                go.Bar(x=np.asarray(row.act_hist_values), y=np.asarray(row.act_hist_heights), marker_color="#c06000")
            )
            dfig.update_layout(
                title="Activation density (SAEDashboard's 50 bins, the build's first positions)",
                height=250,
                xaxis_title="activation",
                yaxis_title="count",
                margin={"t": 40, "b": 30},
            )
            st.plotly_chart(dfig, key="act_density")
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
