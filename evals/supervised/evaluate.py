"""The four evaluations of a dictionary family on a cross-section (Makelov et al. §4).

All are measured on the evaluation prompts, by intervening on every location of the
cross-section at once and reading the logit difference (and top-1 prediction) at END:

- **sufficiency**: a → â. Score LD_â / LD_clean (the paper's); also the fraction of the
  mean-ablation gap it recovers, (LD_â − LD_meanabl) / (LD_clean − LD_meanabl), since on a
  model with redundant paths mean ablation alone can keep most of the logit difference;
- **necessity**: a → E[a] + (a − â), E over the evaluation prompts; score
  1 − |LD_meanabl − LD_int| / |LD_meanabl − LD_clean|;
- **control**: for each attribute, the counterfactual prompt (one attribute changed) gives
  a_t; its activation patch gives the ground-truth top-1 prediction. Supervised edit
  a − u_v + u_v′; SAE greedy edit within k features. Success = fraction of prompts whose
  edited top-1 matches the patch's. Reported with the edit magnitude (removed weight),
  the no-edit baseline (how often the patch leaves the prediction unchanged anyway) and
  success on the prompts the patch does change;
- **interpretability**: features' F1 against attribute predicates; the causal check keeps
  only (sufficiency) or removes (necessity) the features with F1 ≥ t. Following the
  paper (§4.4: "ablate the features with F1 < t" for sufficiency, "≥ t" for necessity),
  both act on the *real* activation, so the SAE's error term is kept. With
  â_S = Σ_{i∈S} f_i d_i, I the interpretable features and Ī the rest (F1 < t, or never
  active), keeping sets a → a − (â_Ī − E[â_Ī]) (``causal.sufficiency``) and removing sets
  a → a − (â_I − E[â_I]) (``causal.necessity``). The paper says "ablate"; centring by
  E[â_S] (a mean ablation of those features) is our choice, so ablating a set whose
  contribution is constant changes nothing. Keeping every feature leaves a unchanged
  (score 1), so ``causal.sufficiency`` measures what the uninterpretable features carry,
  not how good the reconstruction is. The lab's former keep intervention, which replaces
  a by the interpretable part of the reconstruction, a → E[a] + (â_I − E[â_I]) (it drops
  the SAE error too), is reported beside it as ``causal.sufficiency_reconstruction``.

The held-out-template prompts repeat sufficiency and necessity.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from evals.supervised.activations import Intervener
from evals.supervised.config import EvalConfig
from evals.supervised.dictionaries import Family
from evals.supervised.interpretability import feature_f1, summarise
from evals.supervised.locations import CrossSection, Location
from evals.supervised.metrics import edit_magnitude, greedy_edit, necessity_score
from evals.supervised.prompts import PromptSpec


def _mean(x: torch.Tensor) -> float:
    return float(x.float().mean())


class PromptRun:
    """One prompt set: its activations at every location and a model runner."""

    def __init__(self, model, batch, specs: Sequence[PromptSpec], acts: dict[Location, torch.Tensor], batch_size: int):
        self.specs, self.acts = list(specs), acts
        self.runner = Intervener(model, batch, batch_size)
        self.means = {loc: a.mean(0) for loc, a in acts.items()}
        self._mean_ablation: dict[str, float] = {}

    def ld(self, values: dict[Location, torch.Tensor]) -> float:
        return _mean(self.runner.logit_diff(self.runner.end_logits(values)))

    @property
    def clean_ld(self) -> float:
        return _mean(self.runner.logit_diff(self.runner.clean))

    def mean_ablation_ld(self, xs: CrossSection) -> float:
        if xs.name not in self._mean_ablation:
            n = len(self.specs)
            self._mean_ablation[xs.name] = self.ld({loc: self.means[loc].expand(n, -1) for loc in xs.locations})
        return self._mean_ablation[xs.name]


class Evaluator:
    def __init__(self, model, prompts, acts: dict[str, dict[Location, torch.Tensor]], cfg: EvalConfig):
        self.cfg = cfg
        self.eval = PromptRun(model, prompts.eval.batch, prompts.eval.specs, acts["eval"], cfg.batch_size)
        self.heldout = None
        if prompts.heldout is not None:
            self.heldout = PromptRun(
                model, prompts.heldout.batch, prompts.heldout.specs, acts["heldout"], cfg.batch_size
            )
        self.cf_specs = {a: s.specs for a, s in prompts.counterfactuals.items()}
        self.cf_acts = {a: acts[f"cf:{a}"] for a in prompts.counterfactuals}
        self._truth: dict[tuple[str, str], torch.Tensor] = {}
        self._codes: dict[tuple, torch.Tensor] = {}

    @property
    def forward_passes(self) -> int:
        return self.eval.runner.forward_passes + (self.heldout.runner.forward_passes if self.heldout else 0)

    # -- shared pieces ----------------------------------------------------------------

    def codes(self, fam: Family, loc: Location, which: str) -> torch.Tensor:
        """Codes of ``fam`` at ``loc`` on a prompt set: ``eval``, ``heldout`` or ``cf:<attr>``."""
        key = (fam.key, loc, which)
        if key not in self._codes:
            if which.startswith("cf:"):
                acts, specs = self.cf_acts[which[3:]][loc], self.cf_specs[which[3:]]
            else:
                run = self.eval if which == "eval" else self.heldout
                acts, specs = run.acts[loc], run.specs
            self._codes[key] = fam.dictionaries[loc].codes(acts, specs)
        return self._codes[key]

    def recon(self, fam: Family, loc: Location, which: str) -> torch.Tensor:
        d = fam.dictionaries[loc]
        return d.bias.cpu().float() + self.codes(fam, loc, which) @ d.decoder.cpu().float()

    def truth(self, xs: CrossSection, attribute: str) -> torch.Tensor:
        """Top-1 prediction with the cross-section patched from the counterfactual prompts."""
        key = (xs.name, attribute)
        if key not in self._truth:
            logits = self.eval.runner.end_logits({loc: self.cf_acts[attribute][loc] for loc in xs.locations})
            self._truth[key] = logits.argmax(-1)
        return self._truth[key]

    def baseline(self, xs: CrossSection) -> dict:
        clean, ablated = self.eval.clean_ld, self.eval.mean_ablation_ld(xs)
        clean_top1 = self.eval.runner.clean.argmax(-1)
        control = {}
        for a in self.cf_acts:
            flip = _mean(self.truth(xs, a) != clean_top1)
            control[a] = {"flip_rate": flip, "informative": flip >= self.cfg.informative_flip_rate}
        out = {
            "clean_logit_diff": clean,
            "mean_ablation_logit_diff": ablated,
            "mean_ablation_ratio": ablated / clean if clean else float("nan"),
            "control": control,
        }
        if self.heldout is not None:
            out["heldout_template"] = {
                "clean_logit_diff": self.heldout.clean_ld,
                "mean_ablation_logit_diff": self.heldout.mean_ablation_ld(xs),
            }
        return out

    # -- sufficiency and necessity ----------------------------------------------------

    def _suff_nec(self, fam: Family, xs: CrossSection, which: str) -> tuple[dict, dict]:
        run = self.eval if which == "eval" else self.heldout
        recon = {loc: self.recon(fam, loc, which) for loc in xs.locations}
        clean, ablated = run.clean_ld, run.mean_ablation_ld(xs)
        ld_suff = run.ld(recon)
        ld_nec = run.ld({loc: run.means[loc] + run.acts[loc] - recon[loc] for loc in xs.locations})
        gap = clean - ablated
        suff = {
            "score": ld_suff / clean if clean else float("nan"),
            "logit_diff": ld_suff,
            "gap_recovered": (ld_suff - ablated) / gap if gap else float("nan"),
        }
        nec = {"score": necessity_score(ablated, ld_nec, clean), "logit_diff": ld_nec}
        return suff, nec

    def sufficiency_necessity(self, fam: Family, xs: CrossSection) -> tuple[dict, dict]:
        suff, nec = self._suff_nec(fam, xs, "eval")
        fvu, l0 = [], []
        for loc in xs.locations:
            a, r = self.eval.acts[loc], self.recon(fam, loc, "eval")
            fvu.append(float((a - r).pow(2).sum() / (a - a.mean(0)).pow(2).sum().clamp_min(1e-12)))
            l0.append(float((self.codes(fam, loc, "eval") != 0).float().sum(-1).mean()))
        suff["fvu"], suff["l0"] = sum(fvu) / len(fvu), sum(l0) / len(l0)
        if self.heldout is not None:
            h_suff, h_nec = self._suff_nec(fam, xs, "heldout")
            suff["heldout_template"], nec["heldout_template"] = h_suff, h_nec
        return suff, nec

    # -- control ----------------------------------------------------------------------

    def _score_edit(self, xs: CrossSection, attribute: str, edited: dict, removed: dict, fam: Family) -> dict:
        truth = self.truth(xs, attribute)
        top1 = self.eval.runner.end_logits(edited).argmax(-1)
        hit = top1 == truth
        flipped = truth != self.eval.runner.clean.argmax(-1)
        magnitude, distance = [], []
        for loc in xs.locations:
            d = fam.dictionaries[loc]
            magnitude.append(edit_magnitude(self.codes(fam, loc, "eval"), d.decoder.cpu().float(), removed[loc]))
            a_s, a_t = self.eval.acts[loc], self.cf_acts[attribute][loc]
            distance.append((edited[loc] - a_t).norm(dim=-1) / (a_s - a_t).norm(dim=-1).clamp_min(1e-12))
        out = {
            "success": _mean(hit),
            "success_on_changed": _mean(hit[flipped]) if flipped.any() else float("nan"),
            "edit_magnitude": _mean(torch.stack(magnitude)),
            "distance_left": _mean(torch.stack(distance)),
        }
        if not fam.supervised:  # a supervised edit changes 2 features by construction: not reported
            out["features_changed"] = _mean(torch.stack([removed[loc].sum(-1).float() for loc in xs.locations]))
        return out

    def control(self, fam: Family, xs: CrossSection) -> dict:
        clean_top1 = self.eval.runner.clean.argmax(-1)
        out: dict = {"attributes": {}}
        for attribute in self.cf_acts:
            truth = self.truth(xs, attribute)
            entry = {"flip_rate": _mean(truth != clean_top1), "no_edit_success": _mean(truth == clean_top1)}
            entry["informative"] = entry["flip_rate"] >= self.cfg.informative_flip_rate
            if not entry["informative"] and not self.cfg.control_all_attributes:
                entry["edited"] = False  # the patch changes no prediction: success would restate no_edit_success
            elif fam.supervised:
                edited, removed = {}, {}
                for loc in xs.locations:
                    edited[loc], removed[loc] = fam.dictionaries[loc].edit(
                        self.eval.acts[loc], self.eval.specs, self.cf_specs[attribute], attribute
                    )
                entry.update(self._score_edit(xs, attribute, edited, removed, fam))
            else:
                entry["by_k"] = {}
                for k in self.cfg.ks:
                    edited, changed = {}, {}
                    for loc in xs.locations:
                        d = fam.dictionaries[loc]
                        edited[loc], changed[loc] = greedy_edit(
                            self.eval.acts[loc],
                            self.cf_acts[attribute][loc],
                            self.codes(fam, loc, "eval"),
                            self.codes(fam, loc, f"cf:{attribute}"),
                            d.decoder.cpu().float(),
                            k,
                        )
                    entry["by_k"][str(k)] = self._score_edit(xs, attribute, edited, changed, fam)
            out["attributes"][attribute] = entry
        out["headline_attributes"] = [a for a, e in out["attributes"].items() if e["informative"]]
        out.update(_headline(out))
        return out

    # -- interpretability -------------------------------------------------------------

    def interpretability(self, fam: Family, xs: CrossSection) -> dict:
        t, causal_t = self.cfg.f1_threshold, self.cfg.causal_threshold
        per_location, keep, keep_recon, remove = {}, {}, {}, {}
        weights_kept = []
        for loc in xs.locations:
            codes = self.codes(fam, loc, "eval")
            result = feature_f1(codes, self.eval.specs, self.cfg.max_name_set)
            per_location[loc.key] = summarise(result, t)
            chosen = result.live & (result.best_f1 >= causal_t)
            d = fam.dictionaries[loc]
            keep[loc], remove[loc], keep_recon[loc] = causal_edits(
                self.eval.acts[loc], codes, d.decoder.cpu().float(), chosen
            )
            part = codes[:, chosen] @ d.decoder.cpu().float()[chosen]  # â_I
            full = codes @ d.decoder.cpu().float()
            denom = full.pow(2).sum(-1).clamp_min(1e-12)
            weights_kept.append(((part * full).sum(-1) / denom).mean())
        clean, ablated = self.eval.clean_ld, self.eval.mean_ablation_ld(xs)
        ld_keep, ld_remove, ld_keep_recon = self.eval.ld(keep), self.eval.ld(remove), self.eval.ld(keep_recon)
        locs = list(per_location.values())
        live = sum(s["n_live"] for s in locs)
        weighted = lambda field: sum(s[field] * s["n_live"] for s in locs) / live if live else 0.0  # noqa: E731
        gap = clean - ablated
        by_group = {g: sum(s["interpretable_by_group"][g] for s in locs) for g in locs[0]["interpretable_by_group"]}
        return {
            "threshold": t,
            "fraction_interpretable": weighted("fraction_interpretable"),
            "mean_best_f1": weighted("mean_best_f1"),
            "n_live": live,
            "interpretable_by_group": by_group,
            "coverage": {a: sum(s["coverage"][a] for s in locs) / len(locs) for a in ("IO", "S", "Pos")},
            "causal": {
                "threshold": causal_t,
                "weight_of_interpretable": _mean(torch.stack(weights_kept)),
                "sufficiency": ld_keep / clean if clean else float("nan"),
                "sufficiency_gap_recovered": (ld_keep - ablated) / gap if gap else float("nan"),
                "sufficiency_reconstruction": ld_keep_recon / clean if clean else float("nan"),
                "sufficiency_reconstruction_gap_recovered": (ld_keep_recon - ablated) / gap if gap else float("nan"),
                "necessity": necessity_score(ablated, ld_remove, clean),
            },
            "locations": per_location,
        }


def causal_edits(
    acts: torch.Tensor, codes: torch.Tensor, decoder: torch.Tensor, chosen: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The interpretability causal check's three interventions at one location.

    ``chosen`` marks the interpretable features I (F1 ≥ t'); with â_S = Σ_{i∈S} f_i d_i and
    Ī the other features, returns (keep, remove, keep by reconstruction):

    - keep (the paper's): a − (â_Ī − E[â_Ī]), the uninterpretable features mean-ablated from
      the real activation, the SAE error kept;
    - remove: a − (â_I − E[â_I]);
    - keep by reconstruction (the lab's former keep): E[a] + (â_I − E[â_I]), which also
      drops the SAE error.

    E is over the rows of ``acts`` (the evaluation prompts).
    """
    chosen = chosen.to(torch.bool)

    def centred(mask: torch.Tensor) -> torch.Tensor:
        part = codes[:, mask] @ decoder[mask]
        return part - part.mean(0)

    kept, dropped = centred(chosen), centred(~chosen)
    return acts - dropped, acts - kept, acts.mean(0).expand_as(acts) + kept


def _headline(control: dict) -> dict:
    """Success averaged over the informative attributes: per k for SAEs, one number for supervised."""
    names = control["headline_attributes"]
    entries = [control["attributes"][a] for a in names]
    if not entries:
        return {"success": None, "edit_magnitude": None}
    if "by_k" in entries[0]:
        ks = entries[0]["by_k"]
        return {
            "success_by_k": {k: sum(e["by_k"][k]["success"] for e in entries) / len(entries) for k in ks},
            "edit_magnitude_by_k": {k: sum(e["by_k"][k]["edit_magnitude"] for e in entries) / len(entries) for k in ks},
        }
    return {
        "success": sum(e["success"] for e in entries) / len(entries),
        "edit_magnitude": sum(e["edit_magnitude"] for e in entries) / len(entries),
    }
