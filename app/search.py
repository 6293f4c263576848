"""Finding features: by token (a precomputed index), by explanation text, by a pasted prompt.

**Token index** (``dashboard/token_index.parquet``, built with the dashboards, sparse): for
each token id, the features with the highest estimated mean activation over all the
token's occurrences in the dashboard text. The estimate comes from each feature's uniform
sample of its nonzero activations (``FeatureStats.sample``, bottom-k sampling): a sample
entry on token t stands for ``count_f / sample_size_f`` firings of f, so

    est_sum[t, f]  = Σ_{sample entries of f on t} value · count_f / s_f
    score[t, f]    = est_sum[t, f] / occurrences(t)       (mean activation on t, zeros included)
    fire_rate[t, f] = (hits · count_f / s_f) / occurrences(t)   (clipped to 1)

Unbiased for both, and cheap: at most ``d_sae × sample_size`` entries, no second pass over
the text. A token a feature fires on rarely may be missed by the sample (the estimate is
then 0); the top contexts' tokens are not mixed in because they would bias the estimate.

**Explanations** (autointerp): read, never computed here, from any JSON object in the
SAE's folder or the run directory whose ``kind`` is ``autointerp`` (or whose file name
starts with ``autointerp`` or ``explanations``), and that names this SAE (``sae`` equal to
its name or path; a file in the SAE's own folder needs no name). Per-feature records are
taken from the first of ``explanations``, ``latents``, ``features``,
``eval_result_unstructured`` that is present: a list of objects with an index key
(``latent``, ``feature`` or ``index``) or a mapping from the index (as text) to an object
(SAEBench's ``eval_result_unstructured``); the text is ``explanation`` or ``description``,
and every other numeric field is a score.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from app.run_dir import read_json_doc
from sae.errors import SaelabError

TOKEN_INDEX = "token_index.parquet"
INDEX_KEYS = ("latent", "feature", "index", "latent_idx", "feature_index")
TEXT_KEYS = ("explanation", "description", "text")
RECORD_KEYS = ("explanations", "latents", "features", "eval_result_unstructured")


# ---- the token index (built) ----


def token_index(
    sample_where: np.ndarray,
    sample_value: np.ndarray,
    count: np.ndarray,
    flat_tokens: np.ndarray,
    vocab: list[str],
    per_token: int,
) -> pa.Table:
    """The sparse token → top-features table from each feature's uniform activation sample
    (``sample_where``/``sample_value`` ``[F, S]``, -1 where empty) and its firing ``count``."""
    valid = sample_where >= 0
    feats, slots = np.nonzero(valid)
    s = valid.sum(1)
    weight = count[feats] / np.maximum(s[feats], 1)
    tokens = flat_tokens[sample_where[feats, slots]].astype(np.int64)
    values = sample_value[feats, slots].astype(np.float64)
    n_features = sample_where.shape[0]
    keys, inverse = np.unique(tokens * n_features + feats, return_inverse=True)
    est_sum = np.bincount(inverse, weights=weight * values, minlength=len(keys))
    est_fires = np.bincount(inverse, weights=weight, minlength=len(keys))
    tok, feat = keys // n_features, keys % n_features
    occurrences = np.bincount(flat_tokens.astype(np.int64), minlength=len(vocab)).astype(np.float64)
    occ = np.maximum(occurrences[tok], 1)
    score = est_sum / occ
    order = np.lexsort((-score, tok))  # by token, then score descending
    tok, feat, score, rate, occ = tok[order], feat[order], score[order], (est_fires / occ)[order], occ[order]
    starts = np.r_[0, np.nonzero(np.diff(tok))[0] + 1]
    rank = np.arange(len(tok)) - np.repeat(starts, np.diff(np.r_[starts, len(tok)]))
    keep = rank < per_token
    return pa.table(
        {
            "token_id": pa.array(tok[keep].astype(np.int32)),
            "token": pa.array([vocab[int(t)] for t in tok[keep]]),
            "feature": pa.array(feat[keep].astype(np.int32)),
            "rank": pa.array(rank[keep].astype(np.int16)),
            "score": pa.array(score[keep].astype(np.float32)),
            "fire_rate": pa.array(np.minimum(rate[keep], 1.0).astype(np.float32)),
            "occurrences": pa.array(occ[keep].astype(np.int64)),
        }
    )


def read_token_index(sae_dir: str | Path) -> pd.DataFrame:
    path = Path(sae_dir) / "dashboard" / TOKEN_INDEX
    if not path.is_file():
        raise SaelabError(
            f"{Path(sae_dir)}: no token index (dashboards built before it existed); rebuild with "
            f"`saelab dashboard {Path(sae_dir).parent}`"
        )
    try:
        return pq.read_table(path).to_pandas()
    except (pa.ArrowInvalid, OSError) as e:
        raise SaelabError(f"{path}: unreadable ({str(e).splitlines()[0][:100]})") from None


def _norm(token: str) -> str:
    return token.replace("Ġ", " ").replace("▁", " ").strip().lower()


def by_token(index: pd.DataFrame, query: str, k: int = 20) -> pd.DataFrame:
    """Features that fire most on the tokens matching ``query`` (case and leading-space
    insensitive; an exact token string first), best score first."""
    q = query.strip().lower()
    if not q:
        return index.iloc[:0]
    exact = index[index.token == query]
    hits = exact if len(exact) else index[index.token.map(_norm) == q]
    return hits.sort_values("score", ascending=False).head(k).reset_index(drop=True)


# ---- explanations (read) ----


def _records(doc: dict) -> list[dict]:
    for key in RECORD_KEYS:
        body = doc.get(key)
        if isinstance(body, list):
            return [r for r in body if isinstance(r, dict)]
        if isinstance(body, dict):
            out = []
            for idx, r in body.items():
                if isinstance(r, dict) and str(idx).lstrip("-").isdigit():
                    out.append({"feature": int(idx), **r})
                elif isinstance(r, str) and str(idx).isdigit():
                    out.append({"feature": int(idx), "explanation": r})
            return out
    return []


def _row(record: dict) -> dict | None:
    idx = next((record[k] for k in INDEX_KEYS if isinstance(record.get(k), int)), None)
    text = next((record[k] for k in TEXT_KEYS if isinstance(record.get(k), str)), None)
    if idx is None or text is None:
        return None
    scores = {
        k: float(v)
        for k, v in record.items()
        if k not in INDEX_KEYS and isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    return {"feature": int(idx), "explanation": text, **scores}


def _candidates(sae_dir: Path, run_dirs: list[Path]):
    for path in sorted(sae_dir.glob("*.json")):
        if path.name != "cfg.json":
            yield path, True
    for d in run_dirs:
        if d.is_dir():
            for path in sorted(d.rglob("*.json")):
                if "dashboard" not in path.parts and path.name != "cfg.json" and path.parent != sae_dir:
                    yield path, False


def read_explanations(sae_dir: str | Path, name: str, run_dirs: list[Path] = ()) -> tuple[pd.DataFrame, list[str]]:
    """``(table, files)``: one row per explained feature (feature, explanation, scores...) and
    the files read; an empty table when no explanation exists for this SAE."""
    sae_dir = Path(sae_dir)
    rows: dict[int, dict] = {}
    files = []
    for path, own in _candidates(sae_dir, list(run_dirs)):
        named = path.name.startswith(("autointerp", "explanations"))
        doc = read_json_doc(path)
        if doc is None or not (doc.get("kind") == "autointerp" or named):
            continue
        target = doc.get("sae")
        if not own and target not in (name, str(sae_dir), str(sae_dir.resolve())):
            continue
        found = [r for r in map(_row, _records(doc)) if r is not None]
        if found:
            files.append(str(path))
            for r in found:
                rows.setdefault(r["feature"], r)
    table = pd.DataFrame(sorted(rows.values(), key=lambda r: r["feature"]))
    return (table if len(table) else pd.DataFrame(columns=["feature", "explanation"])), files


def by_explanation(explanations: pd.DataFrame, query: str, k: int = 50) -> pd.DataFrame:
    """Explained features whose text contains every word of ``query`` (case-insensitive),
    the most words-in-order first."""
    words = [w for w in query.lower().split() if w]
    if not words or not len(explanations):
        return explanations.iloc[:0]
    text = explanations.explanation.str.lower()
    keep = np.ones(len(text), dtype=bool)
    for w in words:
        keep &= text.str.contains(w, regex=False).to_numpy()
    hits = explanations[keep].copy()
    hits["phrase"] = hits.explanation.str.lower().str.contains(query.lower().strip(), regex=False)
    return hits.sort_values(["phrase", "feature"], ascending=[False, True]).drop(columns="phrase").head(k)


# ---- a pasted prompt (on demand) ----


def prompt_top_features(codes, k: int = 20) -> pd.DataFrame:
    """The ``k`` features with the highest maximum activation over the prompt's positions
    (``codes`` ``[seq, d_sae]``, BOS zeroed), with where they peak and how many positions fire."""
    import torch

    peak, where = codes.max(0)
    fires = (codes > 0).sum(0)
    vals, ids = peak.topk(min(k, codes.shape[1]))
    keep = vals > 0
    ids = ids[keep]
    return pd.DataFrame(
        {
            "feature": ids.tolist(),
            "max_act": vals[keep].tolist(),
            "at": where[ids].tolist(),
            "positions": fires[ids].tolist(),
            "sum_act": codes[:, ids].sum(0).tolist() if len(ids) else torch.zeros(0).tolist(),
        }
    )
