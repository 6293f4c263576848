"""Report sections for ``sweep`` and ``eval`` results (see ``evals.report.SECTION_BUILDERS``).

Builders take every results dict of their kind found in the report's directory and
return sections of figures (``evals.figures``), tables and notes.
"""

from __future__ import annotations

from evals import figures
from evals.report import Section, Table

CORE_COLUMNS = [
    "id",
    "architecture",
    "hook",
    "d_sae",
    "l0",
    "fvu",
    "explained_variance",
    "cosine_similarity",
    "relative_reconstruction_bias",
    "ce_loss_recovered_zero",
    "ce_loss_recovered_mean",
    "delta_ce",
    "kl_div",
    "dead_fraction",
    "dense_fraction",
    "underused_fraction",
]
SPLICE_CHECK_COLUMNS = [
    "id",
    "splice_check_ce_clean",
    "ce_loss_with_sae_and_error",
    "kl_div_with_error",
    "splice_check_max_abs_diff",
    "splice_check_positions",
]
CLAIM_COLUMNS = ["claim", "source", "compared", "a", "b", "difference", "verdict", "why"]


def _flat(sae: dict, columns: list[str]) -> dict:
    return {c: sae["metrics"].get(c, sae.get(c)) for c in columns}


def _pm(stat: dict | None) -> str | None:
    if not stat or stat.get("mean") is None:
        return None
    return f"{stat['mean']:.4g} ± {stat['sd']:.2g} (n={stat['n']})"


def core_section(results: list[dict]) -> Section | None:
    saes = [s for r in results for s in r.get("saes", [])]
    if not saes:
        return None
    spliced = any("ce_loss_clean" in s["metrics"] for s in saes)
    figs = [figures.pareto(saes, "fvu")]
    if spliced:
        figs += [
            figures.pareto(saes, "ce_loss_recovered_zero"),
            figures.pareto(saes, "ce_loss_recovered_mean"),
            figures.ce_by_condition(saes),
        ]
    figs += [figures.dead_dense(saes), figures.density_histograms(saes)]
    tables = [
        Table(
            "Core metrics on held-out text (definitions in results.json)",
            CORE_COLUMNS,
            [_flat(s, CORE_COLUMNS) for s in saes],
        )
    ]
    notes = []
    if spliced:
        tables.append(
            Table(
                "Splice check: with x̂ + (x_clean − x̂) spliced in (x_clean cached by the clean run), CE must "
                "equal the clean CE and the hook's live activation must equal x_clean",
                SPLICE_CHECK_COLUMNS,
                [_flat(s, SPLICE_CHECK_COLUMNS) for s in saes],
            )
        )
        worst = max(
            abs(s["metrics"]["ce_loss_with_sae_and_error"] - s["metrics"]["splice_check_ce_clean"]) for s in saes
        )
        drift = max((s["metrics"].get("splice_check_max_abs_diff") or 0.0) for s in saes)
        aligned = worst < 1e-3 and drift < 1e-4
        notes.append(
            f"Largest |CE with error term − clean CE| over all SAEs: {worst:.2e} nats; largest |live − cached "
            f"activation| at a spliced row: {drift:.2e} "
            f"({'the splice reads and writes every hook correctly' if aligned else 'CHECK THE SPLICE'})."
        )
    for r in results:
        d = r.get("data", {})
        ma = d.get("mean_ablation") or {}
        notes.append(
            f"{r.get('_file', 'results')}: {d.get('n_tokens')} held-out token positions (seed {d.get('seed')}); "
            f"mean ablation over {ma.get('n_tokens')} tokens of seed {ma.get('seed')}; BOS positions are "
            "never spliced or scored."
        )
    return Section(
        "Evaluation: reconstruction, sparsity and spliced-in metrics",
        "Each SAE is measured with its inference encoder on text none of them trained on. "
        "Explained variance is 1 − E‖x−x̂‖² / (E‖x‖² − ‖E x‖²); CE-loss recovered is given against "
        "zero and mean ablation of the hook.",
        figs,
        tables,
        notes,
    )


def synthetic_section(results: list[dict]) -> Section | None:
    synthetic = {}
    for r in results:
        synthetic.update(r.get("synthetic") or {})
    if not synthetic:
        return None
    columns = ["config", "family", "mcc", "mmcs", "recall", "precision", "f1", "fvu", "l0", "dead_fraction", "d_sae"]
    rows = []
    for c, block in synthetic.items():
        rows.extend({"config": c, "family": f, **s} for f, s in block["families"].items())
        for width, s in (block.get("chance") or {}).items():  # chance rows: a random dictionary of that shape
            rows.append({"config": c, "family": f"chance (random, d_sae {width})", **s, "d_sae": int(width)})
    notes = [
        f"'{c}': {b['config']['n_features']} true features in d = {b['config']['d']}, expected L0 "
        f"{b['config']['mean_active']}, Zipf exponent {b['config']['zipf_exponent']}, correlation "
        f"{b['config']['correlation']}, child fraction {b['config']['child_fraction']}, noise "
        f"{b['config']['noise_std']}; MCC of a random dictionary of the same shape (chance): "
        f"{b.get('mcc_chance', float('nan')):.3f}; {b['steps']} steps of {b['batch_size']} rows "
        f"({b['train_seconds']} s)."
        for c, b in synthetic.items()
    ]
    return Section(
        "Synthetic ground-truth recovery",
        "Every family trained on activations generated from a known dictionary; recovery is scored on "
        "the decoder directions (MCC: Hungarian matching; precision/recall at cos > 0.9). The 'chance' rows "
        "give every recovery score for a random Gaussian dictionary of the same shape (every latent live): "
        "the floor each score should be read against.",
        [figures.synthetic_recovery(synthetic)],
        [Table("Recovery of the true features", columns, rows)],
        notes,
    )


def attention_section(results: list[dict]) -> Section | None:
    saes = [s for r in results for s in r.get("saes", []) if s.get("attention")]
    if not saes:
        return None
    figs, rows = [], []
    for s in saes:
        att = s["attention"]
        if "dominant_head_counts" in att["head_attribution"]:
            figs.append(figures.head_attribution(s))
            for head, feats in att["head_attribution"]["top_features"].items():
                rows.append(
                    {
                        "sae": s["id"],
                        "head": head,
                        "top features (share)": ", ".join(f"{i} ({v:.2f})" for i, v in feats),
                    }
                )
        for ex in att["dfa_examples"][:2]:
            figs.append(figures.dfa_heatmap(ex, s["id"]))
    return Section(
        "Attention-output SAEs (Kissane et al.)",
        "Per-head decoder-norm attribution, and direct feature attribution of the strongest feature on "
        "held-out sequences by head and source position (DFA sums to the pre-activation minus the bias).",
        figs,
        [Table("Top features per head by decoder-norm share", ["sae", "head", "top features (share)"], rows)],
    )


def claims_section(results: list[dict]) -> Section | None:
    blocks = [r["claims"] for r in results if r.get("claims")]
    if not blocks:
        return None
    claims = blocks[-1]
    metrics = [
        "l0",
        "fvu",
        "ce_loss_recovered_zero",
        "ce_loss_recovered_mean",
        "delta_ce",
        "kl_div",
        "dead_fraction",
        "underused_fraction",
        "underused_fraction_zipf",
    ]
    metrics += [  # the absorption eval's headline, when the suite ran it (configs/claims_absorption.yaml)
        m
        for m in ("absorption_fraction", "full_absorption_rate")
        if any((r.get(m) or {}).get("mean") is not None for r in claims["table"])
    ]
    table_rows = [
        {
            "name": r["name"],
            "setting": r.get("setting", ""),
            "seeds": r["seeds"],
            "l0 in band": r["l0_in_band"],
            **{m: _pm(r.get(m)) for m in metrics},
        }
        for r in claims["table"]
    ]
    claim_rows = [
        {**c, "a": _pm(c.get("a")), "b": _pm(c.get("b")), "difference": _pm(c.get("difference"))}
        for c in claims["claims"]
    ]
    figs = [figures.claims_bars(claims, m) for m in ("fvu", "delta_ce", "dead_fraction", "underused_fraction")]
    band = claims.get("l0_band")
    notes = list(claims.get("notes", []))
    if band:
        notes.append(f"Matched L0 band: [{band[0]:.1f}, {band[1]:.1f}] (held-out). Seeds: {claims.get('seeds')}.")
    return Section(
        "The seed papers' claims on the organism",
        "Every SAE trained side by side per seed; numbers are mean ± sd over seeds. A claim holds when "
        "every seed agrees and the compared SAEs' held-out L0 is in the band.",
        figs,
        [
            Table("Claims", CLAIM_COLUMNS, claim_rows),
            Table(
                "Per-SAE metrics (mean ± sd over seeds)",
                ["name", "setting", "seeds", "l0 in band", *metrics],
                table_rows,
            ),
        ],
        notes,
    )


def eval_section(results: list[dict]) -> list[Section]:
    sections = [core_section(results), claims_section(results), synthetic_section(results), attention_section(results)]
    return [s for s in sections if s is not None]


def sweep_section(results: list[dict]) -> Section:
    columns = ["run", "name", "architecture", "hook", "l0", "fvu", "pca_fvu", "dead_fraction", "l0_in_band"]
    rows = [
        {"run": r.get("_file"), "name": name, **row} for r in results for name, row in (r.get("saes") or {}).items()
    ]
    notes = [
        f"{r.get('_file')}: {r.get('train_tokens')} training tokens, {r.get('heldout_rows')} held-out rows"
        for r in results
    ]
    return Section(
        "Training sweeps",
        "Held-out scores written by 'saelab train' (sweep_summary.json).",
        [figures.sweep_pareto(results)],
        [Table("Held-out scores", columns, rows)],
        notes,
    )
