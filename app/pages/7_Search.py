"""Search: find features by explanation text, by token (the precomputed token index) or by
pasting a prompt (computed on demand); every result links to its feature page."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app.common import (
    all_saes,
    explanations,
    feature_url,
    features,
    pick_sae,
    prompt_codes,
    run_dirs,
    token_index,
)
from app.search import by_explanation, by_token, prompt_top_features
from sae.errors import SaelabError


def show(df: pd.DataFrame, name: str, top_tokens) -> None:
    """A result table with each feature's top token and a link to its page."""
    view = df.copy()
    view.insert(1, "top token", [top_tokens.iloc[int(f)] if int(f) < len(top_tokens) else None for f in view.feature])
    view["page"] = [feature_url(name, int(f)) for f in view.feature]
    link = st.column_config.LinkColumn("page", display_text="open")
    st.dataframe(view, hide_index=True, column_config={"page": link})
    st.markdown("Open: " + " · ".join(f"[{int(f)}]({feature_url(name, int(f))})" for f in view.feature[:20]))


st.set_page_config(page_title="Search", layout="wide")
st.title("Search features")
entry = pick_sae(all_saes(), need_dashboard=True)
if entry is not None:
    df = features(entry)
    tab_token, tab_prompt, tab_text = st.tabs(["By token", "By prompt", "By explanation"])
    with tab_text:
        table, files = explanations(entry, run_dirs())
        if files:
            st.caption(f"{len(table)} explained features, read from " + ", ".join(files))
            query = st.text_input("Words in the explanation", "", key="q_text")
            if query.strip():
                hits = by_explanation(table, query)
                st.caption(f"{len(hits)} features match")
                if len(hits):
                    show(hits, entry.name, df.top_token)
        else:
            st.info(
                "No autointerp explanations for this SAE (a JSON of kind `autointerp`, or named autointerp*.json / "
                "explanations*.json, in the SAE's folder or naming it in the run directory); search by token or "
                "prompt instead."
            )
    with tab_token:
        query = st.text_input("Token", str(df.top_token.iloc[int(df["count"].idxmax())] or "").strip(), key="q_token")
        try:
            index = token_index(entry)
        except SaelabError as e:
            st.warning(str(e))
            index = None
        if index is not None and query.strip():
            hits = by_token(index, query)
            if len(hits):
                st.caption(
                    "Estimated mean activation on every occurrence of the token (zeros included) and the share of "
                    "occurrences it fires on, from each feature's uniform activation sample"
                )
                show(hits[["feature", "token", "score", "fire_rate", "occurrences"]], entry.name, df.top_token)
            else:
                st.info(f"No feature of the index fires on a token matching {query!r}.")
    with tab_prompt:
        text = st.text_area("Prompt", "When Mary and John went to the store, John gave a drink to", key="q_prompt")
        if text.strip():
            try:
                _model, tok, _sae, tokens, codes = prompt_codes(entry, text)
            except SaelabError as e:
                st.error(str(e))
            else:
                hits = prompt_top_features(codes)
                names = tok.convert_ids_to_tokens(tokens[0].tolist())
                hits["at"] = [f"{p}: {names[p]}" for p in hits["at"]]
                st.caption("The features with the highest activation anywhere in the prompt")
                show(hits, entry.name, df.top_token)
