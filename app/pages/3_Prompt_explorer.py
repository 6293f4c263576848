"""Prompt explorer: the top features at each token of a prompt, steering with one feature
(sampled), and the steering panel: several features with coefficients through the spliced
model, greedy generations and next-token distributions without and with."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
import torch

from app.common import all_saes, feature_link, highlight, load_sae_cached, model_and_tokenizer, pick_sae, prompt_codes
from app.prompt import prompt_tokens, sample, steer, steer_many, top_features, top_token_union
from app.run_dir import model_name
from sae.errors import SaelabError


@st.cache_data(show_spinner="Steering…", max_entries=64)
def panel(sae_path: str, model: str, text: str, coefficients: tuple[tuple[int, float], ...], n: int) -> dict:
    """The steering panel's runs for one setting (cached: a rerun with the same inputs is free)."""
    from sae.spliceable import SAE

    bridge, tok = model_and_tokenizer(model)
    module, cfg = load_sae_cached(sae_path)
    out = steer_many(bridge, tok, SAE.from_cfg(module, cfg), prompt_tokens(tok, text), dict(coefficients), n)
    return {k: v.cpu().numpy() if hasattr(v, "cpu") else v for k, v in out.items()}


@st.cache_data(show_spinner="Steering…", max_entries=64)
def single(sae_path: str, model: str, hook: str, text: str, feature: int, alpha: float, n: int, seed: int) -> dict:
    """One feature's additive steering: next-token probabilities and seeded samples (cached)."""
    bridge, tok = model_and_tokenizer(model)
    module, _ = load_sae_cached(sae_path)
    tokens = prompt_tokens(tok, text)
    clean, steered, fwd = steer(bridge, module, hook, tokens, feature, alpha)
    return {
        "clean": clean.cpu().numpy(),
        "steered": steered.cpu().numpy(),
        "base": sample(bridge, tokens, n, seed),
        "steered_ids": sample(bridge, tokens, n, seed, hooks=[fwd]),
    }


def bold(continuation: str) -> str:
    """A continuation in bold: markdown does not bold ``** text**``, so the space goes outside."""
    core = continuation.strip()
    lead = " " if continuation[:1].isspace() else ""
    return f"{lead}**{core}**" if core else continuation


st.set_page_config(page_title="Prompt explorer", layout="wide")
st.title("Prompt explorer")
entry = pick_sae(all_saes())
if entry is not None:
    text = st.text_input("Prompt", "When Mary and John went to the store, John gave a drink to")
    k = st.slider("Features per token", 1, 10, 5)
    try:
        model, tok, sae, tokens, codes = prompt_codes(entry, text)
    except SaelabError as e:
        st.error(str(e))
        st.stop()
    names = tok.convert_ids_to_tokens(tokens[0].tolist())
    rows = [
        {"pos": p, "token": names[p], **{f"#{j + 1}": f"{f} ({a:.2f})" for j, (f, a) in enumerate(feats)}}
        for p, feats in enumerate(top_features(codes, k))
        if p > 0
    ]
    st.subheader("Top features at each token")
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    strongest = int(codes.max(0).values.argmax())
    c1, c2, c3 = st.columns(3)
    feature = int(c1.number_input("Feature", 0, sae.cfg.d_sae - 1, strongest))
    alpha = float(c2.number_input("Steering strength α", value=10.0, step=1.0))
    seed = int(c3.number_input("Sampling seed", value=0, step=1))
    st.markdown(
        f"Feature {feature} on the prompt: " + highlight(names[1:], codes[1:, feature].tolist()), unsafe_allow_html=True
    )
    feature_link(entry.name, feature)
    n = st.slider("Continuation tokens", 1, 30, 12)
    one = single(str(entry.path), model_name(entry), entry.hook, text, feature, alpha, n, seed)
    clean, steered = one["clean"], one["steered"]
    delta = steered - clean
    order = (-abs(delta)).argsort()[: min(10, len(delta))].tolist()
    st.subheader(f"Next-token probabilities with α·W_dec[{feature}] added at {entry.hook}")
    st.dataframe(
        pd.DataFrame(
            {
                "token": tok.convert_ids_to_tokens(order),
                "clean": [round(float(clean[i]), 4) for i in order],
                "steered": [round(float(steered[i]), 4) for i in order],
                "change": [round(float(delta[i]), 4) for i in order],
            }
        ),
        hide_index=True,
    )
    st.markdown(f"**Clean:** {text}{bold(tok.decode(one['base']))}")
    st.markdown(f"**Steered:** {text}{bold(tok.decode(one['steered_ids']))}")
    st.header("Steering panel")
    st.caption(
        "The SAE spliced in with its error term (HookedSAETransformer): each picked feature's code is raised by its "
        "coefficient at every position but BOS; generations are greedy."
    )
    active = [int(i) for i in codes.max(0).values.topk(min(3, sae.cfg.d_sae)).indices]
    picked = st.multiselect("Features", list(range(sae.cfg.d_sae)), default=active[:2], key="steer_features")
    cols = st.columns(max(len(picked), 1))
    coefficients = {
        int(f): float(cols[i].number_input(f"coefficient of {f}", value=10.0, step=1.0, key=f"coef_{f}"))
        for i, f in enumerate(picked)
    }
    n_greedy = st.slider("Greedy tokens", 1, 30, 10, key="greedy_n")
    result = panel(str(entry.path), model_name(entry), text, tuple(sorted(coefficients.items())), n_greedy)
    g1, g2 = st.columns(2)
    g1.markdown(f"**Without:** {text}{bold(tok.decode(result['clean_ids']))}")
    g2.markdown(f"**With {coefficients}:** {text}{bold(tok.decode(result['steered_ids']))}")
    clean_p, steered_p = result["clean_probs"], result["steered_probs"]
    ids = top_token_union(torch.from_numpy(clean_p), torch.from_numpy(steered_p), 8)
    labels = [repr(t) for t in tok.convert_ids_to_tokens(ids)]
    fig = go.Figure(
        [
            go.Bar(name="without", x=labels, y=[float(clean_p[i]) for i in ids], marker_color="#888"),
            go.Bar(name="with", x=labels, y=[float(steered_p[i]) for i in ids], marker_color="#ff8c00"),
        ]
    )
    fig.update_layout(
        barmode="group", title="Next-token probabilities, top tokens both ways", height=320, margin={"t": 40, "b": 30}
    )
    st.plotly_chart(fig, key="steer_bars")
