"""Report sections of the SAEBench evaluations (kinds ``saebench_<eval>``).

Each section plots the eval's headline metrics against L0 across the SAEs (SAEBench's
frontier plots: one series per architecture) and tabulates every SAE's metrics; the
per-SAE SAEBench files are named in a note.
"""

from __future__ import annotations

from evals import figures
from evals.report import Section, Table

HEADLINES = {
    "core": [
        ("reconstruction_quality", "explained_variance"),
        ("reconstruction_quality", "explained_variance_legacy"),
        ("reconstruction_quality", "explained_variance_saelab"),
        ("model_performance_preservation", "ce_loss_score"),
        ("model_behavior_preservation", "kl_div_score"),
        ("misc_metrics", "frac_alive"),
        ("misc_metrics", "freq_over_10_percent"),
    ],
    "sparse_probing": [
        ("sae", "sae_top_1_test_accuracy"),
        ("sae", "sae_top_5_test_accuracy"),
        ("sae", "sae_test_accuracy"),
        ("llm", "llm_top_1_test_accuracy"),
        ("llm", "llm_test_accuracy"),
    ],
    "absorption": [
        ("mean", "mean_absorption_fraction_score"),
        ("mean", "mean_full_absorption_score"),
        ("mean", "mean_num_split_features"),
    ],
    "scr": [
        ("scr_metrics", "scr_metric_threshold_2"),
        ("scr_metrics", "scr_metric_threshold_10"),
        ("scr_metrics", "scr_metric_threshold_20"),
    ],
    "tpp": [
        ("tpp_metrics", "tpp_threshold_2_total_metric"),
        ("tpp_metrics", "tpp_threshold_10_total_metric"),
        ("tpp_metrics", "tpp_threshold_20_total_metric"),
    ],
    "ravel": [
        ("ravel", "disentanglement_score"),
        ("ravel", "cause_score"),
        ("ravel", "isolation_score"),
    ],
    "autointerp": [
        ("autointerp", "autointerp_score"),
        ("delphi", "detection_balanced_accuracy"),
        ("delphi", "fuzzing_balanced_accuracy"),
    ],
}
TITLES = {
    "core": (
        "SAEBench core metrics",
        "SAEBench's core evaluation from the suite's held-out pass. Explained variance three ways: SAEBench 0.6's "
        "formula (its total variance subtracts the squared mean of x², about the variance around zero), the "
        "SAEBench paper's legacy per-token formula, and the lab's 1 − E‖x−x̂‖²/(E‖x‖² − ‖E x‖²). CE and KL "
        "scores are against zero ablation, as SAEBench.",
    ),
    "sparse_probing": (
        "SAEBench sparse probing on the organism's world",
        "Binary concepts of the organism's world (a word's category, a name's gender, city, job), split by word "
        "or name; logistic probes on the top-k latents by mean difference, beside the same probes on the raw "
        "activations (the 'llm' rows).",
    ),
    "absorption": (
        "SAEBench feature absorption (word categories in place of first letters)",
        "A ground-truth probe per category on the raw activations; k-sparse probing picks each category's main "
        "(split) latents; absorption is measured on held-out prompts of the category's words, by cosine with "
        "the probe and the share of the probe projection the absorbing latents carry.",
    ),
    "scr": (
        "SAEBench spurious correlation removal (gender and job)",
        "A probe trained where gender and job coincide (male names with one job, female names with the other) "
        "leans on gender; zero-ablating the top-n latents chosen for the spurious attribute should restore its "
        "accuracy on the other: (A_abl − A) / (A_skyline − A), 1 = fully debiased, 0 = unchanged.",
    ),
    "tpp": (
        "SAEBench targeted probe perturbation (word categories)",
        "Per category, the top-n latents by effect on its probe are zero-ablated (error term kept): the "
        "category's own probe should lose accuracy (intended) and the other categories' probes should not "
        "(unintended); total = intended − unintended.",
    ),
    "ravel": (
        "SAEBench RAVEL (a name's city, job and food)",
        "Each attribute's latents (chosen on train names) are patched at the name from another name: the queried "
        "attribute's completion should follow (cause), the other attributes' should not (isolation); "
        "disentanglement = (cause + isolation) / 2, on held-out names.",
    ),
    "autointerp": (
        "Autointerp: delphi's detection and fuzzing, SAEBench's autointerp score",
        "Latents explained from their activating windows of held-out organism text, and the explanations scored "
        "two ways, named apart: delphi's detection and fuzzing (balanced accuracy over held-out activating and "
        "random non-activating windows, pooled over latents; chance 0.5) and SAEBench's autointerp score (share "
        "of 14 shuffled windows classified correctly; all-'no' scores 10/14 ≈ 0.71 when the 10 random windows are "
        "silent). The judge (explainer and scorer) is named in the table: 'statistical-baseline' is the offline "
        "log-odds explainer with a rule-based scorer, a floor for an LLM judge, not an LLM result.",
    ),
}


def _metric(doc: dict, category: str, name: str):
    return (doc["eval_result_metrics"].get(category) or {}).get(name)


def section(name: str, results: list[dict]) -> list[Section]:
    saes = [s for r in results for s in r.get("saes", [])]
    if not saes:
        return []
    headlines = HEADLINES[name]
    rows, figs = [], []
    for s in saes:
        row = {"id": s["id"], "architecture": s.get("architecture"), "hook": s.get("hook"), "l0": s.get("l0")}
        row.update({m: _metric(s["document"], c, m) for c, m in headlines})
        rows.append(row)
    for _c, metric in headlines:
        points = [
            {
                "id": r["id"],
                "architecture": r["architecture"],
                "hook": r["hook"],
                "metrics": {"l0": r["l0"], metric: r[metric]},
            }
            for r in rows
            if r["l0"] is not None and r[metric] is not None
        ]
        figs.append(figures.pareto(points, metric))
    title, intro = TITLES[name]
    columns = ["id", "architecture", "hook", "l0", *(m for _c, m in headlines)]
    if name == "autointerp":
        for r, s in zip(rows, saes, strict=True):
            r["judge"] = s["document"]["eval_config"].get("judge")
        columns.append("judge")
        figs.append(autointerp_distribution(saes))
    notes = [f"SAEBench-format files: {', '.join(s['file'] for s in saes)}."]
    defs = results[-1].get("definitions", {})
    notes += [f"{m}: {defs[m]}" for _c, m in headlines if m in defs]
    return [Section(title, intro, figs, [Table(title, columns, rows)], notes)]


def autointerp_distribution(saes: list[dict]):
    """Per-latent score distributions: delphi detection, delphi fuzzing, SAEBench score, one box per SAE."""
    import plotly.graph_objects as go

    fig = go.Figure()
    pick = {
        "delphi detection (balanced acc.)": lambda d: (
            (d.get("delphi") or {}).get("detection", {}).get("balanced_accuracy")
        ),
        "delphi fuzzing (balanced acc.)": lambda d: (d.get("delphi") or {}).get("fuzzing", {}).get("balanced_accuracy"),
        "SAEBench score": lambda d: (d.get("saebench") or {}).get("score"),
    }
    for s in saes:
        details = s["document"]["eval_result_details"]
        judge = s["document"]["eval_config"].get("judge", "")
        xs, ys = [], []
        for label, get in pick.items():
            for d in details:
                v = get(d)
                if v is not None:
                    xs.append(label)
                    ys.append(v)
        fig.add_trace(go.Box(x=xs, y=ys, name=f"{s['id']} ({judge})", boxpoints="all", jitter=0.4))
    fig.update_layout(
        title="Autointerp: per-latent scores",
        boxmode="group",
        height=420,
        template="plotly_white",
        yaxis_title="score per latent",
        yaxis_range=[0, 1.02],
    )
    return fig


def core_section(results: list[dict]) -> list[Section]:
    return section("core", results)


def sparse_probing_section(results: list[dict]) -> list[Section]:
    return section("sparse_probing", results)


def absorption_section(results: list[dict]) -> list[Section]:
    return section("absorption", results)


def scr_section(results: list[dict]) -> list[Section]:
    return section("scr", results)


def tpp_section(results: list[dict]) -> list[Section]:
    return section("tpp", results)


def ravel_section(results: list[dict]) -> list[Section]:
    return section("ravel", results)


def summary_section(results: list[dict]) -> list[Section]:
    """The frontier plots of every eval's headline against L0 (families coloured), each SAE's controls as
    series of their own at the SAE's L0 (``summary.json``), and the table of SAE vs controls."""
    saes = [s for r in results for s in r.get("saes", [])]
    evals = list(dict.fromkeys(name for s in saes for name in s.get("evals", {})))
    if not evals:
        return []
    figs, rows = [], []
    for name in evals:
        points = []
        metric = None
        for s in saes:
            row = s["evals"].get(name)
            if row is None or s.get("l0") is None:
                continue
            metric = metric or row.get("metric")
            for who in ("sae", "random_decoder", "pca", "raw_probe"):
                if row.get(who) is None:
                    continue
                family = s.get("architecture") if who == "sae" else f"control: {who}"
                points.append(
                    {
                        "id": s["id"] if who == "sae" else f"{s['id']} ({who})",
                        "architecture": family,
                        "hook": s.get("hook"),
                        "metrics": {"l0": s["l0"], name: row[who]},
                    }
                )
            rows.append({"id": s["id"], "eval": name, **{k: row.get(k) for k in ("metric", *CONTROL_KEYS)}})
        fig = figures.pareto(points, name)
        fig.update_layout(title=f"{name}: {metric} vs L0 (SAEs and their controls)")
        figs.append(fig)
    intro = (
        "Each evaluation's headline metric against the SAE's held-out L0, one series per family; every SAE's "
        "controls are plotted at its L0: a random-decoder SAE of the same width and measured L0, rank-L0 PCA, "
        "and the raw activations where the eval probes. Controls: " + (results[-1].get("controls") or "")
    )
    columns = ["id", "eval", "metric", *CONTROL_KEYS]
    return [Section("SAEBench frontier and controls", intro, figs, [Table("SAE vs controls", columns, rows)], [])]


CONTROL_KEYS = ("sae", "random_decoder", "pca", "raw_probe")


def autointerp_section(results: list[dict]) -> list[Section]:
    return section("autointerp", results)
