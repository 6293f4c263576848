"""The evaluation suite: every SAE of the given runs, measured on held-out text, into one results file.

``results.json`` (kind ``eval``, schema version ``SCHEMA_VERSION``)::

    kind, schema_version, created, saelab_version, seconds
    suite            the SuiteConfig used (JSON)
    definitions      metric name → its definition (the formulas, the positions scored, the baselines)
    data             {model, source, seed, n_tokens, context_size, mean_ablation: {seed, n_tokens}}
    saes             one entry per SAE:
        name, id (run/name, unique), architecture (training family), inference_architecture,
        model, hook, tl_hook, head, run_dir, sae_dir, d_in, d_sae, k, train_seed, train_tokens,
        inference_rule (gradient SAEs when gradient_inference is on: no_gradient, the lab's TopK
        on z, or gradient, the training rule, for the '<name>_grad_inference' copy),
        metrics      {mse, mse_per_token, explained_variance, fvu, cosine_similarity, l2_ratio,
                      relative_reconstruction_bias, l0, l0_std, l1, dead_fraction, dense_fraction,
                      underused_fraction, underused_fraction_zipf (feature choice), total_variance, rows,
                      ce_loss_clean, ce_loss_with_sae, ce_loss_zero_ablation, ce_loss_mean_ablation,
                      ce_loss_recovered_zero, ce_loss_recovered_mean, delta_ce,
                      kl_div, kl_div_zero_ablation, kl_div_mean_ablation, kl_score_zero, kl_score_mean,
                      ce_loss_with_sae_and_error, kl_div_with_error, splice_check_ce_clean,
                      splice_check_max_abs_diff, ...}
        density_histogram  {log10_edges, counts, dead}
        densities    per-latent firing density on the evaluated tokens
        attention    (attn.hook_z SAEs) {head_attribution: {...}, dfa_examples: [...]}
    synthetic        (when run) configuration name → {config, steps, families: name → scores,
                     chance: d_sae → the same scores for a random dictionary of that shape,
                     mcc_chance: chance MCC at the first family's width}
    timings          wall seconds: heldout_pass (mean-ablation means and the held-out pass, every SAE
                     together) and each SAEBench
                     eval (summed over models)
    claims           (claims suite) {l0_band, table: [...], claims: [...]}
    saebench         (saebench.evals) name → {file: saebench_<name>.json, saes}; SAEBench-format
                     documents per SAE under saebench/<eval_type_id>/ (see evals.saebench)

Splice-metric keys are absent when ``splice: false``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from evals.core.evaluate import SPLICE_DEFINITIONS, EvalTarget, evaluate_saes, mean_activations
from evals.core.metrics import DEFINITIONS, underused_fraction
from evals.saebench import run as saebench
from evals.suite_config import SuiteConfig, check_heldout, eval_source, split_seed
from sae.atomic import write_json
from sae.errors import SaelabError
from sae.progress import progress_bar
from sae.run_dir import SAEEntry, find_saes

SCHEMA_VERSION = 1
#: the name suffix of a gradient SAE evaluated with the gradient term at inference
GRAD_SUFFIX = "_grad_inference"
RESULTS = "results.json"
UNDERUSED_ZIPF_DEFINITION = (
    "feature-choice SAEs only: fraction of latents whose held-out density is below "
    "underused_fraction x the density their Zipf capacity implies (k * share_j), the "
    "aux_zipf notion of under-used"
)
UNDERUSED_DEFINITION = (
    "fraction of latents with density below 0.1 * k / d_sae (a tenth of a uniform share of the "
    "L0 budget; k = the SAE's k, or its measured L0 for families without one), dead ones included"
)


def train_seed(run_dir: Path) -> tuple[int | None, int | None, int | None]:
    """(data seed, trainer seed, token budget) from the run's ``run_config.json``, if there."""
    path = run_dir / "run_config.json"
    if not path.is_file():
        return None, None, None
    try:
        cfg = json.loads(path.read_text())
        data = cfg.get("data", {})
        return data.get("seed", 0), cfg.get("trainer", {}).get("seed", 0), data.get("n_tokens")
    except (ValueError, AttributeError):  # not JSON, not UTF-8, or not a mapping
        return None, None, None


def load_entries(found: list[SAEEntry], device: str) -> list[tuple[EvalTarget, dict]]:
    from sae.saving import load_sae, saved_hook_out

    out = []
    ids = set()
    for entry in found:
        sae, cfg = load_sae(entry.path, device=device)
        ours = cfg.get("saelab") or {}
        meta = cfg.get("metadata") or {}
        if not entry.hook or not entry.model:
            raise SaelabError(f"{entry.path}: cfg.json names no hook or model; cannot splice it in")
        head = ours.get("head", meta.get("hook_head_index"))
        ident = entry.id
        while ident in ids:
            ident += "'"
        ids.add(ident)
        data_seed, seed, tokens = train_seed(entry.run_dir)
        name, replica = split_seed(entry.name)
        info = {
            "name": name,
            "id": ident,
            "architecture": entry.architecture,
            "inference_architecture": cfg.get("architecture"),
            "model": entry.model,
            "hook": entry.hook,
            "tl_hook": ours.get("tl_hook", meta.get("hook_name")),
            **({"hook_out": saved_hook_out(cfg)} if saved_hook_out(cfg) else {}),
            "head": head,
            "run_dir": str(entry.run_dir),
            "sae_dir": str(entry.path),
            "d_in": sae.cfg.d_in,
            "d_sae": sae.cfg.d_sae,
            "k": getattr(sae.cfg, "k", None),
            "train_seed": replica if replica is not None else seed,
            "train_data_seed": data_seed,
            "train_tokens": tokens if tokens is not None else ours.get("train_rows"),
        }
        out.append((EvalTarget(ident, sae, None, info), info))  # spec resolved once the model is loaded
    return out


def gradient_variants(pairs: list[tuple[EvalTarget, dict]]) -> list[tuple[EvalTarget, dict]]:
    """For every gradient SAE (g-SAE), a second entry on the same weights evaluated with its
    training rule at inference (``inference_rule: gradient``: select by z + β·z⊙|W_dec g|,
    g = ∂CE/∂x from a backward pass of the model), named ``<name>_grad_inference``. The
    original entry keeps the lab's inference rule (``inference_rule: no_gradient``: TopK on z)."""
    out = []
    for entry, info in pairs:
        if not getattr(entry.sae, "needs_gradients", False):
            continue
        info["inference_rule"] = "no_gradient"
        variant = {**info, "name": f"{info['name']}{GRAD_SUFFIX}", "id": f"{info['id']}{GRAD_SUFFIX}"}
        variant["inference_rule"] = "gradient"
        out.append((EvalTarget(variant["id"], entry.sae, None, variant), variant))
    return out


def _token_batches(
    cfg: SuiteConfig, tokenizer, hooks: list[str], model_name: str, seed: int, n_tokens: int, context_size: int
):
    from sae.store import StoreConfig, token_batches

    scfg = StoreConfig(
        model=model_name,
        hooks=hooks,
        source=eval_source(cfg, model_name),
        context_size=context_size,
        n_tokens=n_tokens,
        lm_batch_size=cfg.data.lm_batch_size,
        seed=seed,
    )
    return token_batches(scfg, tokenizer), scfg.n_sequences


def _context_size(cfg: SuiteConfig, entries: list[EvalTarget]) -> int:
    if cfg.data.context_size:
        return cfg.data.context_size
    sizes = set()
    for e in entries:
        path = Path(e.info["sae_dir"]) / "cfg.json"
        size = (json.loads(path.read_text()).get("metadata") or {}).get("context_size")
        if size:
            sizes.add(int(size))
    return min(sizes) if sizes else 64


def evaluate_model_group(
    cfg: SuiteConfig, model_name: str, entries: list[EvalTarget], progress: bool, seconds: dict | None = None
) -> dict[str, list[tuple[dict, dict]]]:
    """Evaluate the SAEs of one language model; fills each entry's ``info``. Returns the
    SAEBench documents of the suite's ``saebench.evals`` (name → [(info, document)]);
    wall seconds of the held-out pass and of each SAEBench eval are added to ``seconds``."""
    seconds = {} if seconds is None else seconds
    from evals.attention import dfa_examples, head_summary, is_attention_sae
    from sae.hooks import resolve_hook, resolve_pair
    from sae.model import load_model

    model, tokenizer = load_model(model_name, device=cfg.data.device)
    for e in entries:
        e.spec = resolve_hook(model, e.info["hook"])
        if e.spec.d_in != e.sae.cfg.d_in:
            raise SaelabError(
                f"{e.info['sae_dir']}: d_in {e.sae.cfg.d_in} does not match hook {e.info['hook']} "
                f"of {model_name} (width {e.spec.d_in})"
            )
        if e.info.get("hook_out"):  # a transcoder: spliced at its output hook
            e.out_spec = resolve_pair(model, e.info["hook"], e.info["hook_out"])[1]
            if e.out_spec.d_in != e.sae.cfg.width_out:
                raise SaelabError(
                    f"{e.info['sae_dir']}: d_out {e.sae.cfg.width_out} does not match hook_out "
                    f"{e.info['hook_out']} of {model_name} (width {e.out_spec.d_in})"
                )
    ctx = _context_size(cfg, entries)
    hooks = sorted({s.name for e in entries for s in (e.spec, e.out_spec) if s is not None})
    specs = list({e.written.name: e.written for e in entries}.values())  # ablated: the hooks spliced
    start = time.perf_counter()  # the held-out pass: mean-ablation means and the scored pass
    means = None
    if cfg.splice:
        batches, _ = _token_batches(
            cfg, tokenizer, hooks, model_name, cfg.mean_ablation.seed, cfg.mean_ablation.n_tokens, ctx
        )
        means = mean_activations(model, tokenizer, specs, batches)
    batches, n_seq = _token_batches(cfg, tokenizer, hooks, model_name, cfg.data.seed, cfg.data.n_tokens, ctx)
    observed = saebench.observers(cfg.saebench.evals, entries)
    results = evaluate_saes(
        model,
        tokenizer,
        entries,
        batches,
        means,
        splice=cfg.splice,
        dense_threshold=cfg.dense_threshold,
        progress=progress,
        total=n_seq,
        observe=saebench.combined(observed),
    )
    seconds["heldout_pass"] = seconds.get("heldout_pass", 0.0) + time.perf_counter() - start
    for e in entries:
        r = results[e.name]
        hist, densities = r.pop("density_histogram"), r.pop("densities")
        k = e.info["k"] or r["l0"]
        r["underused_fraction"] = underused_fraction(torch.tensor(densities), k)
        if hasattr(e.sae, "expected_density"):  # feature choice: under-used against its own Zipf capacity
            expected = e.sae.expected_density().detach().cpu().double()
            below = torch.tensor(densities, dtype=torch.float64) < e.sae.cfg.underused_fraction * expected
            r["underused_fraction_zipf"] = float(below.double().mean())
        e.info.update({"metrics": r, "density_histogram": hist, "densities": densities})
        if cfg.attention.enabled and e.out_spec is None and is_attention_sae(e.spec):
            prompts, _ = _token_batches(
                cfg, tokenizer, hooks, model_name, cfg.data.seed, cfg.attention.dfa_prompts * ctx or ctx, ctx
            )
            tokens = next(iter(prompts))
            e.info["attention"] = {
                "head_attribution": head_summary(
                    e.sae, e.spec, model.cfg.n_heads, densities, cfg.attention.top_features
                ),
                "dfa_examples": dfa_examples(model, tokenizer, e.sae, e.spec, tokens, cfg.attention.dfa_prompts),
            }
    e_data = {"model": model_name, "context_size": ctx}
    for e in entries:
        e.info["_data"] = e_data
    group = saebench.EvalGroup(model, tokenizer, entries, cfg, observed, progress, seconds)
    return saebench.run_evals(group)


def definitions() -> dict:
    from evals.synthetic.score import DEFINITIONS as SYNTH

    return {
        **DEFINITIONS,
        **SPLICE_DEFINITIONS,
        "underused_fraction": UNDERUSED_DEFINITION,
        "underused_fraction_zipf": UNDERUSED_ZIPF_DEFINITION,
        **{f"synthetic.{k}": v for k, v in SYNTH.items()},
    }


def run_suite(cfg: SuiteConfig, run_dirs: list[str | Path], out: str | Path, progress: bool = True) -> dict:
    """Evaluate every SAE under ``run_dirs`` (and train the suite's own runs first, if any);
    writes ``out/results.json`` and ``out/report.html``. Returns the results."""
    from evals.report import build_report

    start = time.time()
    out = Path(out)  # created by the first write, so a refused input leaves nothing behind
    run_dirs = [Path(r) for r in run_dirs]
    if cfg.train is not None:
        run_dirs += train_runs(cfg, out, progress)
    if not run_dirs and not cfg.synthetic.enabled:
        raise SaelabError(
            "nothing to evaluate: give run directories, or a suite that trains or runs the synthetic benchmark"
        )
    found = [entry for r in run_dirs for entry in find_saes(r)]
    check_heldout(cfg, {str(e.run_dir): train_seed(e.run_dir)[0] for e in found})
    pairs = load_entries(found, cfg.data.device)
    if cfg.gradient_inference:
        pairs += gradient_variants(pairs)
    groups: dict[str, list[EvalTarget]] = {}
    for entry, info in pairs:
        groups.setdefault(info["model"], []).append(entry)
    data = []
    collected: dict[str, list] = {}
    seconds: dict[str, float] = {}
    for model_name, entries in progress_bar(groups.items(), desc="models", disable=not progress or len(groups) < 2):
        for name, docs in evaluate_model_group(cfg, model_name, entries, progress, seconds).items():
            collected.setdefault(name, []).extend(docs)
        data.append(entries[0].info["_data"])
    saes = []
    for _entry, info in pairs:
        info.pop("_data", None)
        saes.append(info)
    results = {
        "kind": "eval",
        "schema_version": SCHEMA_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "saelab_version": _version(),
        "suite": cfg.model_dump(mode="json"),
        "definitions": definitions(),
        "data": {
            "models": data,
            "source": cfg.data.source.model_dump(),
            "seed": cfg.data.seed,
            "n_tokens": cfg.data.n_tokens,
            "mean_ablation": cfg.mean_ablation.model_dump() if cfg.splice else None,
        },
        "saes": saes,
        "timings": {k: round(v, 2) for k, v in seconds.items()},
    }
    if cfg.synthetic.enabled:
        from evals.synthetic.bench import run_benchmark

        results["synthetic"] = run_benchmark(cfg.synthetic, progress=progress)
    saebench.suite_metrics(collected)
    if cfg.claims:
        from evals.claims import evaluate_claims

        results["claims"] = evaluate_claims(saes, cfg)
    if collected:
        results["saebench"] = {
            name: {"file": f"saebench_{name}.json", "saes": len(r["saes"])}
            for name, r in saebench.write_all(out, collected).items()
        }
    results["seconds"] = round(time.time() - start, 1)
    write_json(out / RESULTS, results)
    build_report(out)
    return results


def train_runs(cfg: SuiteConfig, out: Path, progress: bool) -> list[Path]:
    """The suite's own run, in ``out/train``. A finished run is resumed from its last
    checkpoint (no training; ``train`` also refuses a directory holding a run of another
    config), so rerunning the suite re-evaluates without retraining."""
    from sae.train_run import train

    run_dir = out / "train"
    train(cfg.train.run_config(), run_dir, progress=progress)
    return [run_dir]


def _version() -> str:
    """The installed saelab's version, read from its metadata (``saelab``, the command line
    above ``evals``, reads the same)."""
    from importlib.metadata import version

    return version("saelab")
