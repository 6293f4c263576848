"""``saelab export neuronpedia``: dashboard records as SAEDashboard's ``NeuronpediaRunner`` writes them.

For every SAE of a run directory with a dashboard build (``saelab dashboard``), a folder
``OUT/{model_id}_{sae_set}_{hook}_{d_sae}/`` (the runner's subfolder of its ``outputs_dir``)
holds ``batch-{n}.json`` (the non-skipped features, split as the runner splits them:
``np.array_split`` into ``ceil(n / n_features_at_a_time)`` near-equal parts),
``run_settings.json`` (every field of its ``NeuronpediaRunnerConfig``, plus the build's
``meta.json``) and ``skipped_indexes.json``. Field by field as ``sae_dashboard`` 0.8.0 fills
them, checked against its own runner on the same SAEs and tokens
(``tests/integration/test_neuronpedia_peer.py``):

- decoder norms are folded in, as the runner's ``fold_W_dec_norm()``: activations (contexts,
  maxima, interval bounds, histogram centres) are multiplied by ``‖W_dec[f]‖`` and the
  decoder-space values (logits, their histogram, neuron alignment) divided by it, so the
  numbers are those of the same SAE with unit decoder rows (Neuronpedia's convention; the
  explorer shows the SAE's own scale). Densities, shares and correlations do not change;
- floats go through its ``round_list`` (3 decimals; ``methods-2.md`` says 5, the 0.8.0 source
  says 3 and we follow the source), activations first through ``round(v, 4)`` as its sequence
  packing does; ``frac_nonzero`` and the interval bounds and shares go through the text of
  its titles (``{:.3%}``, ``{:.3f}``) as its parser reads them back;
- densities are over *all* positions, BOS included (its ``frac_nonzero`` divides by every
  position, BOS activations set to 0), not the build's non-BOS positions;
- tokens pass its ``HTML_ANOMALIES`` replacements (``Ġ`` → space, ...);
- contexts: the top group (``bin_min=-1``, ``bin_max`` = the max, ``bin_contains=-1``) then the
  intervals, highest first, each activation with the blank ``dfa_values``/``dfa_maxValue``/
  ``dfa_targetIndex`` 0.8.0 writes without DFA. SAEDashboard shows whole prompts and drops
  their first (BOS) position, shifting ``qualifying_token_index`` by -1; our contexts are the
  build's windows (``left``/``right``; whole prompts when those cover the context), so the BOS
  is dropped (and the index shifted) exactly when the window starts the sequence;
- ``bin_contains`` is the share of *all* positions in ``[lower, upper]`` (SAEDashboard's
  ``pct``; for the lowest interval that includes the zeros): estimated here from the build's
  uniform sample of nonzero activations times the density, plus ``1 - density`` for the lowest.

Intentional differences from 0.8.0's output: features with log10 density below the threshold
(-6) go to ``skipped_indexes.json`` and out of the batches, as the format's documentation
describes (0.8.0 ignores its ``sparsity_threshold`` and writes every feature, with an empty
list); a feature's top group holds only positions where it fired (0.8.0's ``topk`` pads a
rarely-firing feature's group with zero-activation positions) and interval contexts are drawn
from nonzero activations (0.8.0's lowest interval ``[0, max/n]`` also samples zeros, BOS
included, at ``qualifying_token_index`` -1); correlated features and neurons leave BOS
positions out (0.8.0 feeds them into its correlations); the runner's ``tokens_{n}.pt`` cache
is not written; ``decoder_weights_dist`` carries the per-head shares of a ``hook_z`` SAE (0.8.0
fills it only with DFA). Like the correlations, the activation histogram covers the build's
first ``corr_tokens`` positions (every position when the build is no longer; 0.8.0's covers
all its prompts). 0.8.0 itself cannot export a TopK SAE (SAELens refuses ``fold_W_dec_norm`` on
one); this export can.
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
#: sae_dashboard 0.8.0 writes these in every activation even without DFA (``use_dfa=False``):
#: its ``FeatureData.dfa_data`` is never None, so a sequence without DFA data gets the blanks
NO_DFA = {"dfa_values": [], "dfa_maxValue": 0, "dfa_targetIndex": -1}
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


def _round_acts(values) -> list[float]:
    """Activations as SAEDashboard rounds them: ``round(f, 4)`` when packaging the sequence
    (``SequenceDataGenerator``), then ``round_list`` (3 decimals) in the converter; the double
    rounding moves some values by 0.001 from a single ``np.round(x, 3)``."""
    return [float(v) for v in np.round([round(float(v), 4) for v in values], DECIMALS)]


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


def _activation(c: dict, context_size: int, bin_min, bin_max, bin_contains, scale: float = 1.0) -> dict:
    tokens, values, centre = list(c["tokens"]), list(c["acts"]), int(c["centre"])
    if int(c["row"]) % context_size - centre == 0:  # the window starts the sequence: drop its BOS
        tokens, values, centre = tokens[1:], values[1:], centre - 1
    return {
        "bin_min": bin_min,
        "bin_max": bin_max,
        "bin_contains": bin_contains,
        "tokens": [_token(t) for t in tokens],
        "values": _round_acts(np.asarray(values, dtype=np.float64) * scale),
        "qualifying_token_index": centre,
        **NO_DFA,
    }


def _title_float(x: float, fmt: str = ".3f") -> float:
    """A number as SAEDashboard's converter reads it back from its group titles."""
    return float(f"{x:{fmt}}")


def _share(pct: float) -> float:
    """``{:.3%}`` then ``float(...rstrip('%')) / 100``, as the converter parses ``CONTAINS``/``DENSITY``."""
    return float(f"{pct:.3%}".rstrip("%")) / 100


def _activations(ctx: list[dict] | None, row: dict, context_size: int, frac: float, scale: float) -> list[dict]:
    """The top group, then the intervals highest first (each in rank order). ``frac``: the
    feature's share of *all* positions (BOS included); ``scale``: its decoder norm."""
    out = []
    if not ctx:
        return out
    top = sorted((c for c in ctx if c["group"] == "top"), key=lambda c: c["rank"])
    for c in top:
        out.append(_activation(c, context_size, -1, _title_float(float(row["max_act"]) * scale), -1, scale))
    inter = sorted((c for c in ctx if c["group"] == "interval"), key=lambda c: (-c["interval"], c["rank"]))
    bounds = None
    for c in inter:
        if bounds is None or bounds[0] != c["interval"]:
            pct = float(c["share"]) * frac + (1.0 - frac if int(c["interval"]) == 0 else 0.0)
            lo, hi = _title_float(float(c["lo"]) * scale), _title_float(float(c["hi"]) * scale)
            bounds = (c["interval"], lo, hi, _share(pct))
        out.append(_activation(c, context_size, *bounds[1:], scale=scale))
    return out


def _col(row: dict, name: str):
    return row.get(name)


def _scaled(values, scale: float):
    return None if values is None else np.asarray(values, dtype=np.float64) * scale


def all_positions(meta: dict) -> int:
    """Every token position of the build, BOS included: SAEDashboard's density denominator."""
    return int(meta.get("n_sequences") or 0) * int((meta.get("config") or {}).get("context_size") or 0)


def feature_record(row: dict, ctx: list[dict] | None, meta: dict, norm: float = 1.0) -> dict:
    """One feature as ``NeuronpediaDashboardFeature.to_dict`` gives it; ``norm``: ``‖W_dec[f]‖``,
    folded in as ``fold_W_dec_norm`` does (activations ×, decoder-space values ÷)."""
    settings = meta.get("config") or {}
    text = meta.get("text") or {}
    positions = all_positions(meta)
    frac = int(row["count"]) / positions if positions else float(row["density"])
    return {
        "feature_index": int(row["feature"]),
        "neuron_alignment_indices": _ints(_col(row, "align_ids")),
        "neuron_alignment_values": _round(_scaled(_col(row, "align_values"), 1.0 / norm)),
        "neuron_alignment_l1": _round(_col(row, "align_l1")),
        "correlated_neurons_indices": _ints(_col(row, "corr_neuron_ids")),
        "correlated_neurons_l1": _round(_col(row, "corr_neuron_cos")),
        "correlated_neurons_pearson": _round(_col(row, "corr_neuron_pearson")),
        "correlated_features_indices": _ints(_col(row, "corr_feat_ids")),
        "correlated_features_l1": _round(_col(row, "corr_feat_cos")),
        "correlated_features_pearson": _round(_col(row, "corr_feat_pearson")),
        "neg_str": [_token(t) for t in (_col(row, "neg_tokens") if _col(row, "neg_tokens") is not None else [])],
        "neg_values": _round(_scaled(_col(row, "neg_values"), 1.0 / norm)),
        "pos_str": [_token(t) for t in (_col(row, "pos_tokens") if _col(row, "pos_tokens") is not None else [])],
        "pos_values": _round(_scaled(_col(row, "pos_values"), 1.0 / norm)),
        "frac_nonzero": _share(frac),
        "freq_hist_data_bar_values": _round(_scaled(_col(row, "act_hist_values"), norm)),
        "freq_hist_data_bar_heights": _round(_col(row, "act_hist_heights")),
        "logits_hist_data_bar_heights": _round(_col(row, "logit_hist_heights")),
        "logits_hist_data_bar_values": _round(_scaled(_col(row, "logit_hist_values"), 1.0 / norm)),
        "n_prompts_total": int(meta.get("n_sequences") or 0),
        "n_tokens_in_prompt": int(settings.get("context_size") or 0),
        "dataset": dataset_name(text),
        "decoder_weights_dist": _round(_col(row, "head_shares")),
        "activations": _activations(ctx, row, int(settings.get("context_size") or 1), frac, norm),
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


def decoder_norms(entry: SAEEntry) -> np.ndarray:
    """``‖W_dec[f]‖`` of every feature (clamped at 1e-8, as SAELens' ``get_W_dec_norm``)."""
    from sae.saving import load_sae

    try:
        sae = load_sae(entry.path, device="cpu")[0]
    except SaelabError as e:
        raise ConfigError(f"{entry.path}: cannot read the SAE's weights ({e})") from None
    return sae.W_dec.detach().double().norm(dim=1).clamp_min(1e-8).numpy()


def folder_name(model_id: str, sae_set: str, hook: str | None, d_sae: int) -> str:
    """``NeuronpediaRunner.create_output_directory``'s ``{model_id}_{sae_set}_{hook_name}_{d_sae}``."""
    return slug(f"{model_id}_{sae_set}_{hook or ''}_{d_sae}")


def run_settings(entry: SAEEntry, meta: dict, sae_set: str, outputs_dir: str, n_at_a_time: int, threshold) -> dict:
    """Every field of sae_dashboard 0.8.0's ``NeuronpediaRunnerConfig`` (what its ``run_settings.json``
    dumps), filled with what the build did, plus ``hook_name`` and the build's own ``meta.json``."""
    settings = meta.get("config") or {}
    device = settings.get("device") or "cpu"
    return {
        "sae_set": sae_set,
        "sae_path": str(entry.path),
        "outputs_dir": outputs_dir,
        "np_sae_id_suffix": None,
        "np_set_name": None,
        "from_local_sae": True,
        "sparsity_threshold": threshold,
        "huggingface_dataset_path": dataset_name(meta.get("text") or {}),
        "n_prompts_total": int(meta.get("n_sequences") or 0),
        "n_tokens_in_prompt": settings.get("context_size"),
        "n_prompts_in_forward_pass": settings.get("lm_batch_size"),
        "n_features_at_a_time": n_at_a_time,
        "quantile_feature_batch_size": 64,
        "start_batch": 0,
        "end_batch": None,
        "n_quantiles": settings.get("n_intervals"),
        "top_acts_group_size": settings.get("n_top"),
        "quantile_group_size": settings.get("per_interval"),
        "use_dfa": False,
        "model_dtype": "float32",
        "sae_dtype": "float32",
        "model_id": str(meta.get("model") or entry.model or ""),
        "layer": layer_of(entry.hook or meta.get("hook") or ""),
        "sae_device": device,
        "activation_store_device": device,
        "model_device": device,
        "model_n_devices": 1,
        "use_wandb": False,
        "shuffle_tokens": False,
        "prefix_str": None,
        "suffix_str": None,
        "ignore_positions": None,
        "prepend_bos": True,
        "ignore_high_activation_norm_multiple": None,
        "hf_model_path": None,
        "use_transcoder": False,
        "use_skip_transcoder": False,
        "use_clt": False,
        "clt_layer_idx": None,
        "clt_dtype": "",
        "clt_weights_filename": "",
        "sae_converter_name": None,
        "hook_name": entry.hook,
        "saelab_dashboard": meta,
    }


def export_sae(
    entry: SAEEntry,
    out: Path,
    sae_set: str | None = None,
    n_features_at_a_time: int = 128,
    sparsity_threshold: float = SPARSITY_THRESHOLD,
    final: Path | None = None,
    build: tuple | None = None,
) -> list[Path]:
    """Write one SAE's files into ``out`` (an empty folder; ``final``: where it will end up)."""
    meta, features, contexts = build or _read_build(entry)
    model_id = str(meta.get("model") or entry.model or "")
    layer = layer_of(entry.hook or meta.get("hook") or "")
    sae_set = sae_set or slug(entry.name)
    log_density = features["log10_density"].to_numpy()
    skipped = [int(i) for i in features.feature[~(log_density >= sparsity_threshold)]]
    targets = [int(i) for i in features.feature[log_density >= sparsity_threshold]]
    norms = decoder_norms(entry)
    if len(norms) != len(features):
        raise ConfigError(f"{entry.path}: {len(norms)} decoder rows for a build of {len(features)} features; rebuild")
    by_feature: dict[int, list[dict]] = {}
    for c in contexts.to_dict("records"):
        by_feature.setdefault(int(c["feature"]), []).append(c)
    written = []
    settings = run_settings(entry, meta, sae_set, str(final or out), n_features_at_a_time, sparsity_threshold)
    write_json(out / "run_settings.json", settings, indent=4)
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
            "features": [feature_record(rows[f], by_feature.get(f), meta, float(norms[f])) for f in part],
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
    """Export every SAE of ``run_dir`` into ``out/{model_id}_{sae_set}_{hook}_{d_sae}/``, the
    folder ``NeuronpediaRunner`` makes under its ``outputs_dir``; returns the SAE folders."""
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
    builds = [_read_build(e) for e in entries]  # every SAE's build is checked before anything is written
    sets = [slug(e.name) for e in entries]
    if sae_set is not None:
        sets = [sae_set] if len(entries) == 1 else [f"{sae_set}-{s}" for s in sets]
    names = [
        folder_name(str(b[0].get("model") or e.model or ""), s, e.hook, len(b[1]))
        for e, b, s in zip(entries, builds, sets, strict=True)
    ]
    if len(set(names)) != len(names):
        names = [f"{i}-{n}" for i, n in enumerate(names)]
    with atomic_directory(out) as tmp:
        for e, b, s, name in zip(entries, builds, sets, names, strict=True):
            (tmp / name).mkdir()
            export_sae(e, tmp / name, s, n_features_at_a_time, sparsity_threshold, final=out / name, build=b)
    return [out / n for n in names]
