"""The report section for ``kind: supervised`` results (``evals.report.SECTION_BUILDERS``)."""

from __future__ import annotations

from evals.report import Section, Table
from evals.supervised.figures import all_figures, dictionary_order

COLUMNS = [
    "label",
    "l0",
    "l0_matched",
    "fvu",
    "sufficiency",
    "sufficiency_gap_recovered",
    "necessity",
    "control",
    "control_on_changed",
    "edit_magnitude",
    "interpretable_fraction",
    "causal_sufficiency",
    "causal_sufficiency_reconstruction",
    "causal_necessity",
    "heldout_sufficiency",
    "heldout_necessity",
]
INTRO = (
    "Supervised dictionaries (Makelov, Lange & Nanda 2024) built from the IOI attributes (IO name, S name, "
    "position) are the yardstick: mean-feature (â = ā + u_IO + u_S + u_Pos) and MSE. Each SAE is scored on the "
    "same cross-sections of the circuit's heads. Sufficiency: LD with a → â over LD clean. Necessity: a → E[a] + "
    "(a − â), scored 1 − |LD_meanabl − LD_int| / |LD_meanabl − LD_clean|. Control: success = the edited top-1 "
    "prediction matches the counterfactual patch's (supervised edit a − u_v + u_v′; SAE greedy edit within k "
    "features; the table shows the largest k). Edit magnitude: summed weight of the removed features. "
    "Interpretability: fraction of live features whose best F1 against an attribute predicate is ≥ t. Causal "
    "check (the paper's): on the real activation, mean-ablate the features with F1 < t′ (causal sufficiency; the "
    "SAE error is kept) or with F1 ≥ t′ (causal necessity). causal_sufficiency_reconstruction is the "
    "replacement variant, a → E[a] + the centred part of â from the features with F1 ≥ t′ (the SAE error dropped)."
)


def _rows(doc: dict, xs: str) -> list[dict]:
    order = {k: i for i, k in enumerate(dictionary_order(doc))}
    rows = [
        {k: ("yes" if v else "no") if isinstance(v, bool) else v for k, v in r.items()}
        for r in doc["table"]
        if r["cross_section"] == xs
    ]
    return sorted(rows, key=lambda r: order.get(r["dictionary"], 99))


def _control_rows(doc: dict) -> list[dict]:
    rows = []
    for key in dictionary_order(doc):
        for xs, ctrl in doc["results"][key]["control"].items():
            for attribute, entry in ctrl["attributes"].items():
                if not entry["informative"]:
                    continue
                base = {
                    "dictionary": doc["dictionaries"][key]["label"],
                    "cross_section": xs,
                    "attribute": attribute,
                    "flip_rate": entry["flip_rate"],
                }
                points = entry["by_k"].items() if "by_k" in entry else [("edit", entry)]
                for k, e in points:
                    rows.append(
                        {
                            **base,
                            "k": k,
                            "success": e["success"],
                            "success_on_changed": e["success_on_changed"],
                            "edit_magnitude": e["edit_magnitude"],
                            "distance_left": e["distance_left"],
                        }
                    )
    return rows


def _group_rows(doc: dict) -> list[dict]:
    """Interpretable features (F1 ≥ t) by the predicate group they match best, summed over a
    cross-section's locations: how each dictionary splits the attributes (Makelov et al.'s
    over-splitting shows as many Pos or IO×Pos features)."""
    rows = []
    for key in dictionary_order(doc):
        for xs, interp in doc["results"][key]["interpretability"].items():
            rows.append(
                {
                    "dictionary": doc["dictionaries"][key]["label"],
                    "cross_section": xs,
                    "live": interp["n_live"],
                    **interp["interpretable_by_group"],
                    **{f"coverage {a}": v for a, v in interp["coverage"].items()},
                }
            )
    return rows


def _notes(doc: dict) -> list[str]:
    notes = []
    acc = doc.get("acceptance") or {}
    if acc:
        verdict = "met" if acc["met"] else "NOT met"
        notes.append(
            f"Acceptance at {acc['cross_section']}: mean-feature sufficiency {_fmt(acc['supervised_mean_sufficiency'])}"
            f", control success {_fmt(acc['supervised_mean_control'])} (edits of "
            f"{', '.join(acc['control_attributes']) or 'no informative attribute'}); thresholds 0.8: {verdict}. "
            f"Mean ablation alone keeps {_fmt(acc['mean_ablation_ratio'])} of the clean logit difference here."
        )
        notes.append(
            f"Matched L0: target {acc['l0_target']} (k of every k-family; ReLU's L1 chosen per location from a grid "
            f"by evaluation L0), within ±{acc['l0_tolerance']:.0%}. At matched L0 — task: "
            f"{', '.join(acc['task_architectures']) or 'none'}; full distribution: "
            f"{', '.join(acc['full_architectures']) or 'none'}. Outside the band (shown, left out of summaries): "
            f"{', '.join(acc['outside_l0_band']) or 'none'}. Failed (FVU ≥ 1): {', '.join(acc['failed']) or 'none'}."
        )
    finding = doc.get("random_decoder_finding")
    if finding:
        d = finding["random_minus_full"]
        tol = finding["tolerance"]
        if finding["about_as_bad_as_full"]:
            verdict = (
                f"about as bad as the full-distribution SAEs (every difference within ±{tol}), as Makelov et al. found"
            )
        else:
            apart = [f"{m} {'better' if v > 0 else 'worse'}" for m, v in d.items() if v is not None and abs(v) > tol]
            verdict = (
                f"not about as bad as the full-distribution SAEs ({', '.join(apart)} by more than {tol}); "
                "Makelov et al. found it about as bad"
            )
        notes.append(
            f"Random-decoder control vs full-distribution SAEs at matched L0 ({', '.join(finding['full_families'])}; "
            f"mean over cross-sections, random − full): "
            + ", ".join(f"{m} {_fmt(v)}" for m, v in d.items())
            + f". The control is {verdict}."
        )
    for s in doc.get("skipped_saes", []):
        notes.append(f"Skipped SAE {s['path']}: {s['reason']}.")
    if doc.get("not_covered"):
        missing = sorted({f"{n['dictionary']} at {n['cross_section']}" for n in doc["not_covered"]})
        notes.append("Not evaluated (no SAE at every location): " + "; ".join(missing) + ".")
    return notes


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def supervised_section(results: list[dict]) -> Section:
    section = Section("Supervised dictionaries on IOI", intro=INTRO)
    for doc in results:
        prefix = f"{doc['model']} ({doc.get('_file', 'supervised.json')}): " if len(results) > 1 else ""
        for fig in all_figures(doc):
            if prefix:
                fig.update_layout(title=prefix + (fig.layout.title.text or ""))
            section.figures.append(fig)
        for x in doc["cross_sections"]:
            section.tables.append(
                Table(f"{prefix}{x['name']} (heads {', '.join(x['heads'])})", COLUMNS, _rows(doc, x["name"]))
            )
        section.tables.append(
            Table(
                f"{prefix}control edits (informative attributes)",
                [
                    "dictionary",
                    "cross_section",
                    "attribute",
                    "flip_rate",
                    "k",
                    "success",
                    "success_on_changed",
                    "edit_magnitude",
                    "distance_left",
                ],
                _control_rows(doc),
            )
        )
        groups = (
            next(iter(doc["results"][next(iter(doc["results"]))]["interpretability"].values()))[
                "interpretable_by_group"
            ]
            if doc["results"]
            else {}
        )
        section.tables.append(
            Table(
                f"{prefix}interpretable features by best predicate group (F1 ≥ "
                f"{doc['config']['eval']['f1_threshold']}), and attribute coverage",
                ["dictionary", "cross_section", "live", *groups, "coverage IO", "coverage S", "coverage Pos"],
                _group_rows(doc),
            )
        )
        section.notes += [prefix + n for n in _notes(doc)]
    return section
