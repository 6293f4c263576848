"""``saelab export neuronpedia``: dashboard records as SAEDashboard's ``NeuronpediaRunner`` writes them.

For every SAE of a run directory with a dashboard build (``saelab dashboard``), a folder
``OUT/<sae>/`` holds ``batch-{n}.json`` (the non-skipped features, split as the runner splits
them: ``np.array_split`` into ``ceil(n / n_features_at_a_time)`` near-equal parts),
``run_settings.json`` and ``skipped_indexes.json`` (features with log10 density below the
threshold, -6: never fired on the build's text included). Field by field as
``sae_dashboard`` 0.8.0's ``NeuronpediaConverter`` fills them:

- floats go through its ``round_list`` (3 decimals; ``methods-2.md`` says 5, the 0.8.0 source
  says 3 and we follow the source); ``frac_nonzero`` and the interval bounds and shares go
  through the text of its titles (``{:.3%}``, ``{:.3f}``) as its parser reads them back;
- tokens pass its ``HTML_ANOMALIES`` replacements (``Ġ`` → space, ...);
- contexts: the top group (``bin_min=-1``, ``bin_max`` = the max, ``bin_contains=-1``) then the
  intervals, highest first. SAEDashboard shows whole prompts and drops their first (BOS)
  position, shifting ``qualifying_token_index`` by -1; our contexts are windows, so the BOS
  is dropped (and the index shifted) exactly when the window starts the sequence;
- ``bin_contains`` is the share of *all* positions in ``[lower, upper]`` (SAEDashboard's
  ``pct``; for the lowest interval that includes the zeros): estimated here from the build's
  uniform sample of nonzero activations times the density, plus ``1 - density`` for the lowest.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from sae.atomic import atomic_directory, write_json
from sae.errors import ConfigError, SaelabError
from sae.run_dir import SAEEntry, find_saes

DECIMALS = 3  # sae_dashboard 0.8.0 FeatureProcessor.round_list
SPARSITY_THRESHOLD = -6
HTML_ANOMALIES = {
    "âĢĶ": "—",
    "âĢĵ": "–",
    "âĢľ": "“",
    "âĢĿ": "”",
    "âĢĺ": "\u2018",  # left single quotation mark
    "âĢĻ": "\u2019",  # right single quotation mark
    "âĢĭ": " ",
    "Ġ": " ",
    "Ċ": "\n",
    "ĉ": "\t",
}
MIN_DASHBOARD_SCHEMA = 2  # the build that writes the feature tables and 50-bin histograms


def _token(t) -> str:
    s = "" if t is None else str(t)
    for k, v in HTML_ANOMALIES.items():
        s = s.replace(k, v)
    return s


def _round(values) -> list:
    if values is None:
        return []
    arr = np.asarray(values)
    if arr.size == 0:
        return []
    if np.issubdtype(arr.dtype, np.integer):
        return [int(v) for v in arr]
    return [float(v) for v in np.round(arr.astype(np.float64), DECIMALS)]


def _ints(values) -> list[int]:
    return [] if values is None else [int(v) for v in values]


def layer_of(hook: str) -> int:
    """The block index of a TransformerLens hook (``blocks.5.hook_resid_post`` → 5; 0 if none)."""
    m = re.search(r"blocks\.(\d+)\.", hook or "")
    return int(m.group(1)) if m else 0


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "sae"


def _read_build(entry: SAEEntry) -> tuple[dict, object, object]:
    d = entry.dashboard
    files = [d / f for f in ("meta.json", "features.parquet", "contexts.parquet")]
    if not all(f.is_file() for f in files):
        raise ConfigError(f"{entry.path}: no dashboard build; run `saelab dashboard {entry.run_dir}` first")
    try:
        meta = json.loads(files[0].read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{files[0]}: unreadable ({str(e).splitlines()[0][:100]})") from None
    if not isinstance(meta, dict) or meta.get("kind") != "dashboard":
        raise ConfigError(f"{files[0]}: not a dashboard build's meta.json")
    if int(meta.get("schema_version", 0)) < MIN_DASHBOARD_SCHEMA:
        raise ConfigError(
            f"{entry.dashboard}: built by an older saelab without the feature tables; "
            f"rebuild with `saelab dashboard {entry.run_dir}`"
        )
    try:
        features = pq.read_table(files[1]).to_pandas()
        contexts = pq.read_table(files[2]).to_pandas()
    except Exception as e:  # pyarrow raises several kinds for a damaged file
        raise ConfigError(f"{entry.dashboard}: unreadable dashboard files ({str(e).splitlines()[0][:100]})") from None
    if len(features) != entry.d_sae:
        raise ConfigError(f"{entry.dashboard}: {len(features)} feature rows for an SAE of {entry.d_sae} features")
    return meta, features, contexts


def _activation(c: dict, context_size: int, bin_min, bin_max, bin_contains) -> dict:
    tokens, values, centre = list(c["tokens"]), list(c["acts"]), int(c["centre"])
    if int(c["row"]) % context_size - centre == 0:  # the window starts the sequence: drop its BOS
        tokens, values, centre = tokens[1:], values[1:], centre - 1
    return {
        "bin_min": bin_min,
        "bin_max": bin_max,
        "bin_contains": bin_contains,
        "tokens": [_token(t) for t in tokens],
        "values": _round(values),
        "qualifying_token_index": centre,
    }


def _activations(ctx: list[dict] | None, row: dict, context_size: int) -> list[dict]:
    """The top group, then the intervals highest first (each in rank order)."""
    out = []
    if not ctx:
        return out
    top = sorted((c for c in ctx if c["group"] == "top"), key=lambda c: c["rank"])
    for c in top:
        out.append(_activation(c, context_size, -1, float(f"{float(row['max_act']):.3f}"), -1))
    inter = sorted((c for c in ctx if c["group"] == "interval"), key=lambda c: (-c["interval"], c["rank"]))
    density = float(row["density"])
    bounds = None
    for c in inter:
        if bounds is None or bounds[0] != c["interval"]:
            pct = float(c["share"]) * density + (1.0 - density if int(c["interval"]) == 0 else 0.0)
            contains = float(f"{pct:.3%}".rstrip("%")) / 100
            bounds = (c["interval"], float(f"{c['lo']:.3f}"), float(f"{c['hi']:.3f}"), contains)
        out.append(_activation(c, context_size, *bounds[1:]))
    return out


def _col(row: dict, name: str):
    return row.get(name)


def feature_record(row: dict, ctx: list[dict] | None, meta: dict) -> dict:
    """One feature as ``NeuronpediaDashboardFeature.to_dict`` gives it."""
    settings = meta.get("config") or {}
    text = meta.get("text") or {}
    return {
        "feature_index": int(row["feature"]),
        "neuron_alignment_indices": _ints(_col(row, "align_ids")),
        "neuron_alignment_values": _round(_col(row, "align_values")),
        "neuron_alignment_l1": _round(_col(row, "align_l1")),
        "correlated_neurons_indices": _ints(_col(row, "corr_neuron_ids")),
        "correlated_neurons_l1": _round(_col(row, "corr_neuron_cos")),
        "correlated_neurons_pearson": _round(_col(row, "corr_neuron_pearson")),
        "correlated_features_indices": _ints(_col(row, "corr_feat_ids")),
        "correlated_features_l1": _round(_col(row, "corr_feat_cos")),
        "correlated_features_pearson": _round(_col(row, "corr_feat_pearson")),
        "neg_str": [_token(t) for t in (_col(row, "neg_tokens") if _col(row, "neg_tokens") is not None else [])],
        "neg_values": _round(_col(row, "neg_values")),
        "pos_str": [_token(t) for t in (_col(row, "pos_tokens") if _col(row, "pos_tokens") is not None else [])],
        "pos_values": _round(_col(row, "pos_values")),
        "frac_nonzero": float(f"{float(row['density']):.3%}".rstrip("%")) / 100,
        "freq_hist_data_bar_values": _round(_col(row, "act_hist_values")),
        "freq_hist_data_bar_heights": _round(_col(row, "act_hist_heights")),
        "logits_hist_data_bar_heights": _round(_col(row, "logit_hist_heights")),
        "logits_hist_data_bar_values": _round(_col(row, "logit_hist_values")),
        "n_prompts_total": int(meta.get("n_sequences") or 0),
        "n_tokens_in_prompt": int(settings.get("context_size") or 0),
        "dataset": dataset_name(text),
        "decoder_weights_dist": _round(_col(row, "head_shares")),
        "activations": _activations(ctx, row, int(settings.get("context_size") or 1)),
        "vector": [],
    }


def dataset_name(text: dict) -> str:
    """What the build's text source was, in one string (Neuronpedia shows it as the dataset)."""
    return str(text.get("path") or text.get("kind") or "")


def batches(indexes: list[int], size: int) -> list[list[int]]:
    """``NeuronpediaRunner.get_feature_batches``: ``np.array_split`` into ``ceil(n/size)`` parts."""
    if not indexes:
        return []
    return [list(map(int, p)) for p in np.array_split(np.array(indexes), math.ceil(len(indexes) / size))]


def export_sae(
    entry: SAEEntry,
    out: Path,
    sae_set: str | None = None,
    n_features_at_a_time: int = 128,
    sparsity_threshold: float = SPARSITY_THRESHOLD,
    final: Path | None = None,
) -> list[Path]:
    """Write one SAE's files into ``out`` (an empty folder; ``final``: where it will end up)."""
    meta, features, contexts = _read_build(entry)
    model_id = str(meta.get("model") or entry.model or "")
    layer = layer_of(entry.hook or meta.get("hook") or "")
    sae_set = sae_set or slug(entry.name)
    log_density = features["log10_density"].to_numpy()
    skipped = [int(i) for i in features.feature[~(log_density >= sparsity_threshold)]]
    targets = [int(i) for i in features.feature[log_density >= sparsity_threshold]]
    by_feature: dict[int, list[dict]] = {}
    for c in contexts.to_dict("records"):
        by_feature.setdefault(int(c["feature"]), []).append(c)
    settings = meta.get("config") or {}
    written = []
    run_settings = {
        "sae_set": sae_set,
        "sae_path": str(entry.path),
        "outputs_dir": str(final or out),
        "np_sae_id_suffix": None,
        "np_set_name": None,
        "from_local_sae": True,
        "sparsity_threshold": sparsity_threshold,
        "huggingface_dataset_path": dataset_name(meta.get("text") or {}),
        "n_prompts_total": int(meta.get("n_sequences") or 0),
        "n_tokens_in_prompt": settings.get("context_size"),
        "n_features_at_a_time": n_features_at_a_time,
        "n_quantiles": settings.get("n_intervals"),
        "top_acts_group_size": settings.get("n_top"),
        "quantile_group_size": settings.get("per_interval"),
        "model_id": model_id,
        "layer": layer,
        "hook_name": entry.hook,
        "prepend_bos": True,
        "saelab_dashboard": meta,
    }
    write_json(out / "run_settings.json", run_settings, indent=4)
    write_json(
        out / "skipped_indexes.json",
        {
            "model_id": model_id,
            "layer": str(layer),
            "sae_set": sae_set,
            "log_sparsity": sparsity_threshold,
            "skipped_indexes": skipped,
        },
        indent=None,
    )
    written += [out / "run_settings.json", out / "skipped_indexes.json"]
    rows = {int(r["feature"]): r for r in features.to_dict("records")}
    for n, part in enumerate(batches(targets, n_features_at_a_time)):
        doc = {
            "model_id": model_id,
            "layer": layer,
            "sae_set": sae_set,
            "sae_id_suffix": None,
            "features": [feature_record(rows[f], by_feature.get(f), meta) for f in part],
        }
        write_json(out / f"batch-{n}.json", doc, indent=None)
        written.append(out / f"batch-{n}.json")
    return written


def export_run(
    run_dir: str | Path,
    out: str | Path,
    force: bool = False,
    sae_set: str | None = None,
    n_features_at_a_time: int = 128,
    sparsity_threshold: float = SPARSITY_THRESHOLD,
) -> list[Path]:
    """Export every SAE of ``run_dir`` into ``out/<sae>/``; returns the SAE folders."""
    if n_features_at_a_time < 1:
        raise ConfigError(f"--features-per-batch must be at least 1, not {n_features_at_a_time}")
    try:
        entries = find_saes(run_dir, strict=False)
    except SaelabError as e:  # no such directory, no saved SAE: the user's input (exit 2)
        raise ConfigError(str(e)) from None
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ConfigError(f"{out}: not empty; pass --force to replace it")
    for e in entries:
        _read_build(e)  # every SAE's build is checked before anything is written
    names = [slug(e.name) for e in entries]
    if len(set(names)) != len(names):
        names = [f"{i}-{n}" for i, n in enumerate(names)]
    with atomic_directory(out) as tmp:
        for e, name in zip(entries, names, strict=True):
            (tmp / name).mkdir()
            this_set = None if sae_set is None else sae_set if len(entries) == 1 else f"{sae_set}-{name}"
            export_sae(e, tmp / name, this_set, n_features_at_a_time, sparsity_threshold, final=out / name)
    return [out / n for n in names]
