"""Shared pieces of the explorer pages: which run directories, cached loads, clean errors.

Run directories come from the command line (``streamlit run app/Runs.py -- DIR...``), or from
``SAELAB_RUN_DIRS`` (os.pathsep-separated) so tests can set them. A page never shows a
traceback for a bad directory: ``SaelabError`` becomes one ``st.error`` line.
"""

from __future__ import annotations

import html
import os
import sys
from pathlib import Path

import streamlit as st

from app.run_dir import find_results, model_name
from sae.errors import SaelabError
from sae.run_dir import SAEEntry, find_saes


def run_dirs() -> list[Path]:
    args = [a for a in sys.argv[1:] if not a.startswith("-")]
    if os.environ.get("SAELAB_RUN_DIRS"):
        args = os.environ["SAELAB_RUN_DIRS"].split(os.pathsep)
    return [Path(a) for a in args if a]


def all_saes() -> list[SAEEntry]:
    """Every SAE of every run directory; a missing directory is reported in the page, and a
    directory without SAEs (results only) is reported only when no directory has any."""
    dirs = run_dirs()
    if not dirs:
        st.error("No run directory given: start the explorer with `saelab explore RUN_DIR`.")
        return []
    out, empty = [], []
    for d in dirs:
        try:
            out.extend(find_saes(d, strict=False))
        except SaelabError as e:
            if d.is_dir():
                empty.append(str(e))
            else:
                st.error(str(e))
    if not out:
        for message in empty:
            st.error(message)
    return out


def results(kind: str) -> list[dict]:
    docs = []
    for d in run_dirs():
        if d.is_dir():
            docs.extend({**doc, "_file": str(p)} for p, doc in find_results(d, kind))
    return docs


def existing_run_dirs() -> list[Path]:
    """The run directories that exist; each missing one is reported in the page."""
    dirs = run_dirs()
    if not dirs:
        st.error("No run directory given: start the explorer with `saelab explore RUN_DIR`.")
    for d in dirs:
        if not d.is_dir():
            st.error(f"{d}: no such run directory")
    return [d for d in dirs if d.is_dir()]


def pick_sae(saes: list[SAEEntry], key: str = "sae", need_dashboard: bool = False) -> SAEEntry | None:
    from app.dashboard_data import has_dashboard

    choices = [s for s in saes if has_dashboard(s.path)] if need_dashboard else saes
    if not choices:
        if saes and need_dashboard:
            st.warning(
                "No SAE here has dashboard records yet; build them with "
                f"`saelab dashboard {saes[0].path.parent if len(saes) > 1 else saes[0].path}`."
            )
        return None
    names = [s.name for s in choices]
    models = {s.name: model_name(s) for s in choices}
    wanted = st.query_params.get("sae")
    index = names.index(wanted) if wanted in names else 0
    # the label names the model (organism or organism-b) the SAE was trained on
    name = st.selectbox("SAE", names, index=index, key=key, format_func=lambda n: f"{n} · {models[n]}")
    st.query_params["sae"] = name
    return choices[names.index(name)]


@st.cache_resource(show_spinner="Loading the model…")
def model_and_tokenizer(name: str):
    from sae.model import load_model

    return load_model(name)


@st.cache_resource(show_spinner="Loading the SAE…")
def load_sae_cached(path: str):
    from sae.saving import load_sae

    return load_sae(path)


def prompt_codes(entry, text: str):
    """``(model, tokenizer, sae, tokens, codes)`` of ``text`` under ``entry``'s SAE at its hook;
    ``SaelabError`` when the prompt has no token past BOS."""
    from app.prompt import prompt_tokens, token_codes

    model, tok = model_and_tokenizer(model_name(entry))
    sae, _cfg = load_sae_cached(str(entry.path))
    tokens = prompt_tokens(tok, text)
    if tokens.shape[1] < 2:
        raise SaelabError("the prompt has no tokens")
    return model, tok, sae, tokens, token_codes(model, tok, sae, entry.hook, tokens)


# cache_resource, not cache_data: cache_data unpickles a copy on every read, which for a
# 16,384-row table with list columns costs most of a page's second; callers copy what they change
@st.cache_resource(show_spinner=False, max_entries=16)
def features_cached(path: str, mtime: float):
    from app.dashboard_data import read_features

    return read_features(path)


def features(entry: SAEEntry):
    """The feature table; an unreadable one stops the page with one message."""
    f = entry.dashboard / "features.parquet"
    try:
        return features_cached(str(entry.path), f.stat().st_mtime if f.exists() else 0.0)
    except SaelabError as e:
        st.error(str(e))
        st.stop()


def highlight(tokens: list[str], acts, centre: int | None = None, scale: float | None = None) -> str:
    """Tokens as HTML spans shaded by activation (orange; the centre token underlined)."""
    top = scale if scale and scale > 0 else max([float(a) for a in acts] + [1e-9])
    spans = []
    for i, (t, a) in enumerate(zip(tokens, acts, strict=True)):
        alpha = min(max(float(a) / top, 0.0), 1.0)
        style = f"background: rgba(255,140,0,{alpha:.2f}); padding:0 1px; border-radius:2px"
        if i == centre:
            style += "; border-bottom: 2px solid #333"
        text = html.escape(t).replace(" ", "&nbsp;")
        spans.append(f'<span title="{float(a):.3f}" style="{style}">{text}</span>')
    return "<span style='font-family:monospace'>" + "".join(spans) + "</span>"


def render_sections(kind: str, docs: list[dict]) -> None:
    """Show the report's sections for results of ``kind`` (figures, tables, notes)."""
    from evals.report import Section, _builder

    try:
        built = _builder(kind)(docs)
    except Exception as e:  # a malformed results file must not take the page down
        st.error(f"could not read the {kind} results: {type(e).__name__}: {str(e)[:200]}")
        return
    for section in built if isinstance(built, list) else [built]:
        assert isinstance(section, Section)
        st.subheader(section.title)
        if section.intro:
            st.markdown(section.intro)
        for i, fig in enumerate(section.figures):
            st.plotly_chart(fig, key=f"{kind}-{section.title}-{i}")
        for table in section.tables:
            st.caption(table.caption)
            st.dataframe([{c: r.get(c) for c in table.columns} for r in table.rows])
        for note in section.notes:
            st.caption(note)


def feature_url(sae_name: str, feature: int) -> str:
    """The Feature dashboard page of one feature (a URL, so links also work when a page runs
    on its own, as in tests)."""
    from urllib.parse import urlencode

    return "./Feature_dashboard?" + urlencode({"sae": sae_name, "feature": int(feature)})


def feature_link(sae_name: str, feature: int, label: str | None = None) -> None:
    st.markdown(f"[{label or f'Feature {feature} dashboard →'}]({feature_url(sae_name, feature)})")


def results_page(kind: str, empty: str) -> None:
    """A page showing the report sections of every ``kind`` results file in the run directories."""
    if existing_run_dirs():
        docs = results(kind)
        if docs:
            render_sections(kind, docs)
        else:
            st.info(empty)


@st.cache_resource(show_spinner=False, max_entries=16)
def _token_index_cached(path: str, mtime: float):
    from app.search import read_token_index

    return read_token_index(path)


def token_index(entry: SAEEntry):
    """The SAE's token → features index (raises SaelabError when absent or unreadable)."""
    from app.search import TOKEN_INDEX

    f = entry.dashboard / TOKEN_INDEX
    return _token_index_cached(str(entry.path), f.stat().st_mtime if f.exists() else 0.0)


@st.cache_data(show_spinner=False, ttl=60)
def _explanations_cached(path: str, name: str, dirs: tuple[str, ...]):
    from app.search import read_explanations

    return read_explanations(path, name, [Path(d) for d in dirs])


def explanations(entry: SAEEntry, dirs: list[Path]):
    """``(table, files)`` of the SAE's autointerp explanations (``app.search.read_explanations``)."""
    return _explanations_cached(str(entry.path), entry.name, tuple(str(d) for d in dirs))
