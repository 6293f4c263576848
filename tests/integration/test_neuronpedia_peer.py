"""``saelab export neuronpedia`` against sae-dashboard 0.8.0's own ``NeuronpediaRunner``
(``bench/peers/saedashboard_neuronpedia.py``, venv ``bench/.peers/sae_dashboard``) on the same
SAEs, the same organism and the same token rows: file layout, keys and types, rounding, BOS
handling and values. Skipped when the peer venv is absent (``SAELAB_BUILD_PEERS=1`` builds it,
about 3 minutes).

Tolerances, and why:

- decoder-space values (top/bottom logits, neuron alignment, histogram centres) and
  activations: 0.001, one unit in the last kept decimal. Both sides round to 3 decimals the
  same way, but compute in float32 in a different order (SAELens folds ``‖W_dec‖`` into the
  weights before the forward pass, the export scales the build's values after), so a value
  that sits on a rounding boundary can land on either side of it;
- ``frac_nonzero`` and ``bin_contains``: 1e-5, one unit in the last decimal that survives
  SAEDashboard's ``{:.3%}`` titles (the counts themselves are exact: the build keeps every
  nonzero activation here, ``sample_size`` ≥ positions; SAEDashboard takes the mean in float32);
- histogram heights: equal in total, at most 2 counts moved between bins, since a float32
  value on a bin edge may fall either side of it;
- top contexts: the same prompts at the same rank up to ties (the activation after BOS on a
  repeated first token is the same number in several rows; torch breaks such ties its own way).
  A feature firing at fewer than ``top_acts_group_size`` positions has only those here;
  SAEDashboard's ``topk`` fills the group with zero-activation positions.

Intentional differences (see ``app/export_neuronpedia.py``): correlated features/neurons are
computed without BOS positions and over all features (SAEDashboard feeds BOS rows into its
correlations and only correlates the features of one batch with each other; a dense
reference of each definition is checked against each side), interval
contexts are drawn from nonzero activations only (SAEDashboard's lowest interval starts at 0,
so it shows zero-activation positions, BOS included, at index -1), the runner's
``tokens_{n}.pt`` cache is not written, and features below the sparsity threshold are listed in
``skipped_indexes.json`` (0.8.0 ignores its threshold and writes every feature; here every
feature is live, so the layouts coincide).
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow  # ~33 s on 2 cores: the peer imports sae-dashboard and runs its pipeline 4 times

FAMILIES = ("relu", "jumprelu_ste", "gated")  # SAELens' standard, jumprelu and gated
HOOK = "blocks.1.hook_resid_post"
N_PROMPTS, CONTEXT, D_SAE, PER_BATCH = 64, 32, 32, 12
TOL = 1e-3
SHARE_TOL = 1e-5 + 1e-9  # float noise of float(f"{x:.3%}".rstrip("%")) / 100


def _sae(arch: str, d_in: int):
    """An SAE with nonzero biases and decoder rows of norms 0.05 to 0.2 (not unit: the fold matters)."""
    from sae.architectures import family, sae_class

    cls = sae_class(arch)
    torch.manual_seed(3)
    sae = cls(cls.config_class(d_in=d_in, d_sae=D_SAE, **({"k": 4} if family(arch).has_k else {})))
    with torch.no_grad():
        for bias in ("b_enc", "b_gate", "b_mag", "r_mag"):
            if isinstance(getattr(sae, bias, None), torch.nn.Parameter):
                getattr(sae, bias).normal_(0, 0.1)
        unit = torch.nn.functional.normalize(sae.W_dec, dim=1)
        sae.W_dec.copy_(unit * torch.linspace(0.05, 0.2, D_SAE)[:, None])
    return sae.eval()


@pytest.fixture(scope="module")
def both(tmp_path_factory, organism):
    """Our export and SAEDashboard's of the same SAEs over the same 64 rows of 32 tokens."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from safetensors.torch import save_file

    from app.dashboard_config import DashboardConfig
    from app.dashboard_data import build_run
    from app.export_neuronpedia import export_run
    from bench.peers import peer_python, run_peer
    from sae import providers
    from sae.errors import SaelabError
    from sae.saving import save_sae
    from sae.text import TextSource, iter_texts, pack_rows

    try:
        peer_python(build=os.environ.get("SAELAB_BUILD_PEERS") == "1", peer="sae_dashboard")
    except SaelabError as e:
        pytest.skip(f"the sae_dashboard peer venv is unavailable ({e}); set SAELAB_BUILD_PEERS=1 to build it")
    model, tok = organism
    root = tmp_path_factory.mktemp("np_peer")
    rows = itertools.islice(pack_rows(iter_texts(TextSource(kind="organism"), seed=5), tok, CONTEXT), N_PROMPTS)
    tokens = np.stack(list(rows)).astype(np.int64)
    pq.write_table(pa.table({"tokens": list(tokens)}), root / "tokens.parquet")
    save_file({"tokens": torch.from_numpy(tokens)}, str(root / "tokens.safetensors"))
    run = root / "run"
    for arch in (*FAMILIES, "topk"):
        save_sae(_sae(arch, model.cfg.d_model), run / arch, metadata={"hook": HOOK, "model": "organism", "name": arch})
    cfg = DashboardConfig(
        source=TextSource(kind="tokens", path=str(root / "tokens.parquet")),
        n_tokens=N_PROMPTS * CONTEXT,
        context_size=CONTEXT,
        lm_batch_size=32,
        n_top=20,
        n_intervals=5,
        per_interval=5,
        left=CONTEXT,  # whole rows, as SAEDashboard shows them (narrower windows are sub-rows)
        right=CONTEXT,
        sample_size=N_PROMPTS * CONTEXT,  # every nonzero activation: exact interval shares
    )
    build_run(run, cfg, progress=False, model=model, tokenizer=tok)
    ours = export_run(run, root / "ours", n_features_at_a_time=PER_BATCH)
    payload = {
        "saes": [{"sae_dir": str(run / a), "sae_set": a} for a in (*FAMILIES, "topk")],
        "model_dir": str(providers.get("organism").model_dir),
        "tokens": str(root / "tokens.safetensors"),
        "outputs_dir": str(root / "theirs"),
        "dataset": "organism-tokens",
        "n_features_at_a_time": PER_BATCH,
        "n_quantiles": cfg.n_intervals,
        "top_acts_group_size": cfg.n_top,
        "quantile_group_size": cfg.per_interval,
    }
    narrow = root / "narrow"  # the default kind of build: windows around the activating token
    meta = {"hook": HOOK, "model": "organism", "name": "relu"}
    save_sae(_sae("relu", model.cfg.d_model), narrow / "relu", metadata=meta)
    build_run(narrow, cfg.model_copy(update={"left": 4, "right": 2}), progress=False, model=model, tokenizer=tok)
    (windows,) = export_run(narrow, root / "ours_narrow", n_features_at_a_time=PER_BATCH)
    theirs = run_peer("saedashboard_neuronpedia.py", payload, peer="sae_dashboard", timeout=900)
    assert theirs["peer_version"] == "0.8.0"
    by_set = {json.loads((p / "skipped_indexes.json").read_text())["sae_set"]: p for p in ours}
    return {
        "ours": by_set,
        "theirs": theirs["saes"],
        "tokens": tokens,
        "vocab": tok.convert_ids_to_tokens,
        "run": run,
        "organism": organism,
        "windows": windows,
    }


def _batches(folder: Path) -> list[dict]:
    files = sorted(folder.glob("batch-*.json"), key=lambda p: int(p.stem.split("-")[1]))
    return [json.loads(p.read_text()) for p in files]


def _type(v):
    """A JSON value's type; a list's by the types of its elements."""
    if isinstance(v, list):
        return ("list", tuple(sorted({_type(x) for x in v}, key=str)))
    return type(v).__name__


def _theirs(both, arch: str) -> Path:
    result = both["theirs"][arch]
    assert "error" not in result, result.get("error")
    return Path(result["outputs_dir"])


@pytest.mark.parametrize("arch", FAMILIES)
def test_layout_matches_saedashboard(both, arch):
    """Same folder name, same files (less the runner's token cache), same skipped_indexes.json,
    and every run_settings.json key of the runner's config."""
    ours, theirs = both["ours"][arch], _theirs(both, arch)
    assert ours.name == theirs.name == f"organism_{arch}_{HOOK}_{D_SAE}"
    names = sorted(p.name for p in theirs.iterdir() if p.is_file())
    assert f"tokens_{N_PROMPTS}.pt" in names
    assert sorted(p.name for p in ours.iterdir()) == [n for n in names if not n.startswith("tokens_")]
    assert [n for n in names if n.startswith("batch-")] == [f"batch-{i}.json" for i in range(3)]  # 32 in 11+11+10
    assert json.loads((ours / "skipped_indexes.json").read_text()) == json.loads(
        (theirs / "skipped_indexes.json").read_text()
    )
    mine, peer = (json.loads((d / "run_settings.json").read_text()) for d in (ours, theirs))
    assert set(peer) <= set(mine)
    for key in ("sae_set", "n_prompts_total", "n_tokens_in_prompt", "n_features_at_a_time", "n_quantiles"):
        assert mine[key] == peer[key], key
    for key in ("top_acts_group_size", "quantile_group_size", "model_id", "layer", "from_local_sae", "use_dfa"):
        assert mine[key] == peer[key], key


@pytest.mark.parametrize("arch", FAMILIES)
def test_keys_and_types_match_and_theirs_validate(both, arch):
    """Every batch, feature and activation has SAEDashboard's keys with its JSON types; the
    schema (written from the format's documentation) accepts SAEDashboard's own files."""
    import jsonschema

    schemas = Path(__file__).resolve().parents[2] / "app" / "schemas"
    validator = jsonschema.Draft202012Validator(json.loads((schemas / "neuronpedia_batch.schema.json").read_text()))
    for mine, peer in zip(_batches(both["ours"][arch]), _batches(_theirs(both, arch)), strict=True):
        validator.validate(peer)
        assert {k: _type(v) for k, v in mine.items() if k != "features"} == {
            k: _type(v) for k, v in peer.items() if k != "features"
        }
        assert [f["feature_index"] for f in mine["features"]] == [f["feature_index"] for f in peer["features"]]
        for fm, fp in zip(mine["features"], peer["features"], strict=True):
            assert list(fm) == list(fp)
            for key in fp:
                if key == "activations":
                    continue
                assert _type(fm[key]) == _type(fp[key]) or not (fm[key] and fp[key]), key
            for group in (lambda a: a["bin_min"] == -1, lambda a: a["bin_min"] != -1):  # top, intervals
                kinds_m = {tuple((k, _type(v)) for k, v in a.items()) for a in fm["activations"] if group(a)}
                kinds_p = {tuple((k, _type(v)) for k, v in a.items()) for a in fp["activations"] if group(a)}
                assert kinds_m == kinds_p, (fm["feature_index"], kinds_m ^ kinds_p)


def _close(a: list, b: list, tol: float = TOL) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= tol + 1e-9 for x, y in zip(a, b, strict=True))


def _top_groups_agree(mine: list[dict], peer: list[dict]) -> None:
    """Rank by rank the same activation at the qualifying token; the same prompts, except
    among tied activations; SAEDashboard's padding past the firing positions is zeros."""
    assert 0 < len(mine) <= len(peer)
    qm = [a["values"][a["qualifying_token_index"]] for a in mine]
    qp = [a["values"][a["qualifying_token_index"]] for a in peer]
    assert all(q <= TOL for q in qp[len(mine) :])
    qp = qp[: len(mine)]
    assert _close(qm, qp)
    key = lambda a: (tuple(a["tokens"]), a["qualifying_token_index"])  # noqa: E731
    theirs = {key(a): a for a in peer}
    for a, q in zip(mine, qm, strict=True):
        twin = theirs.get(key(a))
        if twin is None:  # a tie: another prompt with the same activation took this rank there
            assert sum(abs(x - q) <= TOL for x in qp) >= 2
            continue
        assert _close(a["values"], twin["values"]), (a["tokens"], a["values"], twin["values"])


@pytest.mark.parametrize("arch", FAMILIES)
def test_values_match_saedashboard(both, arch):
    tokens, vocab = both["tokens"], both["vocab"]
    bos = vocab(int(tokens[0, 0]))
    for mine, peer in zip(_batches(both["ours"][arch]), _batches(_theirs(both, arch)), strict=True):
        for fm, fp in zip(mine["features"], peer["features"], strict=True):
            f = fm["feature_index"]
            # logits: W_dec[f]/‖W_dec[f]‖ · W_U, top and bottom 10
            for side in ("pos", "neg"):
                assert _close(fm[f"{side}_values"], fp[f"{side}_values"]), (f, side)
                for i, (sm, sp) in enumerate(zip(fm[f"{side}_str"], fp[f"{side}_str"], strict=True)):
                    assert sm == sp or abs(fp[f"{side}_values"][i] - fp[f"{side}_values"][i - 1 if i else 1]) <= TOL
            assert fm["neuron_alignment_indices"] == fp["neuron_alignment_indices"]
            assert _close(fm["neuron_alignment_values"], fp["neuron_alignment_values"])
            assert _close(fm["neuron_alignment_l1"], fp["neuron_alignment_l1"])
            # density over every position, BOS included
            assert abs(fm["frac_nonzero"] - fp["frac_nonzero"]) <= SHARE_TOL, f
            for kind in ("freq", "logits"):
                hm, hp = fm[f"{kind}_hist_data_bar_heights"], fp[f"{kind}_hist_data_bar_heights"]
                assert len(hm) == len(hp) == 50 and sum(hm) == sum(hp)
                assert np.abs(np.subtract(hm, hp)).sum() <= 2, (f, kind)
                assert _close(fm[f"{kind}_hist_data_bar_values"], fp[f"{kind}_hist_data_bar_values"]), (f, kind)
            for key in ("n_prompts_total", "n_tokens_in_prompt"):
                assert fm[key] == fp[key]
            # contexts: whole prompts without their BOS, index shifted by one
            top_m = [a for a in fm["activations"] if a["bin_min"] == -1]
            top_p = [a for a in fp["activations"] if a["bin_min"] == -1]
            assert top_m and top_m[0]["bin_max"] == top_p[0]["bin_max"]
            _top_groups_agree(top_m, top_p)
            rows = {tuple(vocab(int(t)).replace("Ġ", " ") for t in r[1:]) for r in tokens}
            for a in fm["activations"]:
                assert len(a["tokens"]) == CONTEXT - 1 and a["tokens"][0] != bos
                assert tuple(a["tokens"]) in rows
                assert 0 <= a["qualifying_token_index"] < CONTEXT - 1
            # intervals: the same bounds and shares of all positions
            bins_m = {(a["bin_min"], a["bin_max"]): a["bin_contains"] for a in fm["activations"] if a["bin_min"] != -1}
            bins_p = {(a["bin_min"], a["bin_max"]): a["bin_contains"] for a in fp["activations"] if a["bin_min"] != -1}
            for (lo, hi), share in bins_m.items():
                twin = [k for k in bins_p if abs(k[0] - lo) <= TOL and abs(k[1] - hi) <= TOL]
                assert twin, (f, lo, hi, sorted(bins_p))
                assert abs(bins_p[twin[0]] - share) <= SHARE_TOL, (f, lo, hi)
            for a in fm["activations"]:
                if a["bin_min"] != -1:
                    q = a["values"][a["qualifying_token_index"]]
                    assert a["bin_min"] - TOL <= q <= a["bin_max"] + TOL  # > 0 before rounding


def test_windows_are_slices_of_saedashboards_prompts(both):
    """With the default narrow windows (here 4 left, 2 right) every top context is the slice of
    SAEDashboard's BOS-less prompt around the same token, with the same values; a window that
    starts the sequence loses its BOS and keeps the prompt's index, one that does not keeps all
    its tokens and the activating token at index ``left``."""
    at_start = matched = total = 0
    for mine, peer in zip(_batches(both["windows"]), _batches(_theirs(both, "relu")), strict=True):
        for fm, fp in zip(mine["features"], peer["features"], strict=True):
            top_p = [a for a in fp["activations"] if a["bin_min"] == -1]
            for a in (a for a in fm["activations"] if a["bin_min"] == -1):
                c, n = a["qualifying_token_index"], len(a["tokens"])
                assert c <= 4 and n <= c + 3  # fewer only at the sequence's ends
                at_start += c < 4
                slices = []
                for p in top_p:
                    lo = p["qualifying_token_index"] - c
                    if lo == 0 or (lo > 0 and c == 4):  # a window short on the left starts the prompt
                        slices.append((p["tokens"][lo : lo + n], p["values"][lo : lo + n]))
                total += 1
                if any(t == a["tokens"] and _close(v, a["values"]) for t, v in slices):
                    matched += 1
                else:
                    q = a["values"][c]  # a tie broken the other way there: a prompt of the same value
                    assert sum(abs(p["values"][p["qualifying_token_index"]] - q) <= TOL for p in top_p) >= 2, a
    assert at_start > 0 and matched >= 0.9 * total, (at_start, matched, total)  # the BOS case is exercised


def _top3_pearson(x: torch.Tensor, y: torch.Tensor, same: bool) -> list[list[int]]:
    """Dense reference: for each column of ``x``, the 3 columns of ``y`` of highest Pearson."""
    p = torch.corrcoef(torch.cat([x, y], 1).T)[: x.shape[1], x.shape[1] :]
    if same:
        p.fill_diagonal_(0)
    return p.topk(3, dim=1).indices.tolist()


def test_correlations_differ_only_by_definition(both):
    """Each side's correlated features and neurons are the top-3 Pearson of a dense reference
    of its own definition: ours over non-BOS positions and all features, SAEDashboard's over
    every position (BOS included) and only the features of the same batch."""
    from sae.harvest import Harvester
    from sae.saving import load_sae

    model, tok = both["organism"]
    tokens = torch.from_numpy(both["tokens"])
    harvester = Harvester(model, tok, [HOOK])
    with torch.no_grad():
        x = harvester.full(tokens)[HOOK].flatten(0, 1).double()
        codes = load_sae(both["run"] / "relu")[0].encode(x.float()).double()
    keep = harvester.mask(tokens).flatten()
    first = _batches(both["ours"]["relu"])[0]["features"]
    batch = [f["feature_index"] for f in first]  # the peer's first batch holds the same features
    peer = _batches(_theirs(both, "relu"))[0]["features"]
    ref_ours = _top3_pearson(codes[keep][:, batch], codes[keep], same=False)
    ref_theirs = _top3_pearson(codes[:, batch], codes[:, batch], same=True)
    for i, f in enumerate(batch):
        own = [j for j in ref_ours[i] if j != f]  # a feature is never its own neighbour
        assert first[i]["correlated_features_indices"][:2] == own[:2]
        assert peer[i]["correlated_features_indices"] == [batch[j] for j in ref_theirs[i]]
    assert [f["correlated_neurons_indices"] for f in first] == _top3_pearson(codes[keep][:, batch], x[keep], False)
    assert [f["correlated_neurons_indices"] for f in peer] == _top3_pearson(codes[:, batch], x, False)


def test_saedashboard_refuses_a_topk_sae(both):
    """SAELens 6.54 will not fold decoder norms into a TopK SAE (``rescale_acts_by_decoder_norm``
    is False), so sae-dashboard 0.8.0 cannot export one; ours does (``test_export.py``)."""
    assert "Folding W_dec_norm is not safe" in both["theirs"]["topk"]["error"]
    assert "topk" in both["ours"]
