"""The seed papers' claims, tested on SAEs trained side by side over several seeds.

Each claim compares one metric between two SAEs of the same run (same data, same seed),
found by their names in the claims config. A claim **held** when the direction holds on
every seed and both SAEs' held-out L0 lies in the band (l0_target ± tolerance); it is
**mixed** when some seeds agree and some do not, **not held** when none agree, and
**not matched** when the direction holds but an L0 lies outside the band (the comparison
is then not at equal sparsity), and **no difference** when the two are equal on every
seed. The numbers (mean ± sd over seeds, per-seed differences) are always given, whatever
the verdict.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

#: metrics shown in the claims table (mean ± sd over seeds)
TABLE_METRICS = (
    "l0",
    "fvu",
    "explained_variance",
    "ce_loss_recovered_zero",
    "ce_loss_recovered_mean",
    "delta_ce",
    "kl_div",
    "dead_fraction",
    "underused_fraction",
    "underused_fraction_zipf",
    "dense_fraction",
    "absorption_fraction",
    "full_absorption_rate",
)


@dataclass(frozen=True)
class Claim:
    key: str
    text: str
    source: str
    metric: str
    a: str  # the SAE the claim is about
    b: str | None  # what it is compared with (None: compared with ``value``)
    relation: str  # "<", ">" or "=="
    value: float | None = None


CLAIMS = (
    Claim(
        "mc_reconstructs_better",
        "Mutual choice reconstructs better than TopK at equal L0 (lower FVU)",
        "Ayonrinde 2024",
        "fvu",
        "mutual_choice",
        "topk",
        "<",
    ),
    Claim(
        "fc_no_dead",
        "Feature choice has zero dead latents (held-out)",
        "Ayonrinde 2024",
        "dead_fraction",
        "feature_choice",
        None,
        "==",
        0.0,
    ),
    Claim(
        "aux_zipf_fewer_underused",
        "aux_zipf leaves fewer under-used latents than AuxK (same feature-choice SAE; "
        "under-used against the Zipf capacity)",
        "Ayonrinde 2024",
        "underused_fraction_zipf",
        "feature_choice",
        "feature_choice_auxk",
        "<",
    ),
    Claim(
        "gsae_lower_delta_ce",
        "g-SAE has a lower spliced ΔCE than TopK at equal L0",
        "Olmo et al. 2024",
        "delta_ce",
        "gsae",
        "topk",
        "<",
    ),
    Claim(
        "matryoshka_absorbs_less",
        "Matryoshka (BatchTopK) absorbs less than TopK at equal L0 (SAEBench's mean absorption fraction, "
        "word-category hierarchy)",
        "Bussmann et al. 2025; Karvonen et al. 2025",
        "absorption_fraction",
        "matryoshka",
        "topk",
        "<",
    ),
    Claim(
        "mc_absorbs_less",
        "Mutual choice absorbs less than TopK at equal L0 (SAEBench's mean absorption fraction, "
        "word-category hierarchy)",
        "issue 23 (SAEBench on the organism)",
        "absorption_fraction",
        "mutual_choice",
        "topk",
        "<",
    ),
    Claim(
        "vsae_more_dead",
        "vSAE has more dead latents than TopK, AuxK matched (the paper's negative result)",
        "Baker & Li 2025",
        "dead_fraction",
        "vsae",
        "topk",
        ">",
    ),
)


#: what each named SAE of the claims suite is, shown as the table's ``setting`` column
SETTINGS = {
    "vsae": "vSAE, the lab's fair-comparison setting (sampling, learned σ, KL on μ, AuxK matched to TopK)",
    "vsae_paper": "vSAE, the paper's setting (var_flag=0: no sampling, σ = 1, KL on ReLU(μ) × mean decoder "
    "norm, AuxK off, lr 8e-4, KL coefficient 1)",
}
#: gradient SAEs by their inference rule (``evals.suite.gradient_variants``)
INFERENCE_RULES = {
    "no_gradient": "no gradient at inference (the lab's rule: TopK on z)",
    "gradient": "gradient at inference (the training rule, z + β·z⊙|W_dec g|)",
}


def setting(name: str, sae: dict) -> str:
    """The named setting of an SAE in the claims table ("" when it has none)."""
    rule = sae.get("inference_rule")
    if rule in INFERENCE_RULES:
        return f"{sae.get('architecture', name)}: {INFERENCE_RULES[rule]}"
    return SETTINGS.get(name, "")


def mean_sd(values: list[float]) -> dict:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return {"mean": None, "sd": None, "n": 0}
    return {"mean": statistics.fmean(vals), "sd": statistics.stdev(vals) if len(vals) > 1 else 0.0, "n": len(vals)}


def _by_name_and_seed(saes: list[dict]) -> dict[str, dict[int, dict]]:
    out: dict[str, dict[int, dict]] = {}
    for s in saes:
        out.setdefault(s["name"], {})[s.get("train_seed")] = s
    return out


def _compare(x: float, y: float, relation: str) -> bool:
    if relation == "<":
        return x < y
    if relation == ">":
        return x > y
    return x == y


def _in_band(sae: dict, band: tuple[float, float] | None) -> bool:
    return band is None or band[0] <= sae["metrics"]["l0"] <= band[1]


def _measured(by_seed: dict[int, dict], metric: str) -> bool:
    """Whether every seed of an SAE has ``metric`` as a number (absorption: only when that eval ran)."""
    values = [s["metrics"].get(metric) for s in by_seed.values()]
    return all(isinstance(v, int | float) and not math.isnan(v) for v in values)


def evaluate_claim(claim: Claim, groups: dict[str, dict[int, dict]], band: tuple[float, float] | None) -> dict:
    row = {
        "key": claim.key,
        "claim": claim.text,
        "source": claim.source,
        "metric": claim.metric,
        "compared": f"{claim.a} {claim.relation} {claim.b if claim.b else claim.value}",
    }
    missing = [n for n in (claim.a, claim.b) if n is not None and n not in groups]
    if missing:
        return {**row, "verdict": "not tested", "why": f"no SAE named {', '.join(missing)} in the suite"}
    unmeasured = [n for n in (claim.a, claim.b) if n is not None and not _measured(groups[n], claim.metric)]
    if unmeasured:
        return {**row, "verdict": "not tested", "why": f"{claim.metric} not measured by this suite"}
    seeds = sorted(
        set(groups[claim.a]) & (set(groups[claim.b]) if claim.b else set(groups[claim.a])), key=lambda s: (s is None, s)
    )
    per_seed, agree, matched = [], 0, True
    for seed in seeds:
        a = groups[claim.a][seed]
        x = a["metrics"][claim.metric]
        y = groups[claim.b][seed]["metrics"][claim.metric] if claim.b else claim.value
        ok = _compare(x, y, claim.relation)
        agree += ok
        matched &= _in_band(a, band) and (claim.b is None or _in_band(groups[claim.b][seed], band))
        per_seed.append({"seed": seed, "a": x, "b": y, "difference": x - y, "holds": ok})
    a_stats = mean_sd([p["a"] for p in per_seed])
    b_stats = mean_sd([p["b"] for p in per_seed])
    diff = mean_sd([p["difference"] for p in per_seed])
    if per_seed and claim.relation != "==" and all(p["difference"] == 0 for p in per_seed):
        verdict = "no difference"
    elif agree == len(per_seed) and per_seed:
        verdict = "held" if matched else "not matched"
    elif agree == 0:
        verdict = "not held"
    else:
        verdict = "mixed"
    why = f"{agree}/{len(per_seed)} seeds in the claimed direction"
    if not matched:
        why += "; an L0 lies outside the band"
    return {
        **row,
        "verdict": verdict,
        "why": why,
        "seeds": len(per_seed),
        "a": a_stats,
        "b": b_stats,
        "difference": diff,
        "per_seed": per_seed,
    }


def claims_table(groups: dict[str, dict[int, dict]], band: tuple[float, float] | None) -> list[dict]:
    rows = []
    for name, by_seed in groups.items():
        saes = list(by_seed.values())
        row = {
            "name": name,
            "setting": setting(name, saes[0]),
            "architecture": saes[0]["architecture"],
            "seeds": len(saes),
            "l0_in_band": all(_in_band(s, band) for s in saes),
        }
        for m in TABLE_METRICS:
            row[m] = mean_sd([s["metrics"].get(m) for s in saes])
        rows.append(row)
    return rows


def evaluate_claims(saes: list[dict], cfg) -> dict:
    """The claims block of the results: the table (mean ± sd per SAE name) and each claim."""
    band = None
    if cfg.l0_target is not None:
        band = (cfg.l0_target * (1 - cfg.l0_tolerance), cfg.l0_target * (1 + cfg.l0_tolerance))
    specs = {s["name"]: s["sae"] for s in (cfg.train.run.model_dump()["saes"] if cfg.train else [])}
    for s in saes:  # the trained config of each SAE, for the AuxK-matched check
        s_cfg = specs.get(s["name"], {})
        s["aux_coefficient"] = s_cfg.get("aux_coefficient")
    groups = _by_name_and_seed(saes)
    results = [evaluate_claim(c, groups, band) for c in CLAIMS]
    vsae, topk = specs.get("vsae", {}), specs.get("topk", {})
    notes = []
    if vsae and topk:
        matched = vsae.get("aux_coefficient", 1 / 32) == topk.get("aux_coefficient", 1 / 32)
        notes.append(
            f"AuxK {'matched' if matched else 'NOT matched'} between vsae and topk "
            f"(aux_coefficient {vsae.get('aux_coefficient', 1 / 32)} vs {topk.get('aux_coefficient', 1 / 32)})"
        )
    for s in saes:
        s.pop("aux_coefficient", None)
    return {
        "l0_band": list(band) if band else None,
        "seeds": sorted({s.get("train_seed") for s in saes}, key=lambda v: (v is None, v)),
        "table": claims_table(groups, band),
        "claims": results,
        "notes": notes,
    }
