"""The ``saelab demo`` stage for circuit discovery: the organism's IOI circuit as the
discrete-SAE finder sees it (the paper's fixed hyperparameters), next to the ground truth."""

from __future__ import annotations

from pathlib import Path


def ioi_circuit_lines(out: Path) -> list[str]:
    """Runs the finder (seconds), writes ``out/circuit_ioi_discrete-sae.json``, returns lines to print."""
    from circuits import ground_truth
    from circuits.methods import MethodConfig, run_method
    from circuits.results import result_json
    from sae.atomic import write_json
    from sae.model import load_model

    model, tokenizer = load_model("organism")
    truths = ground_truth.resolve("organism", "ioi", None, model.cfg.n_layers, model.cfg.n_heads)
    cfg = MethodConfig(n_prompts=250)
    doc = result_json(
        run_method(model, tokenizer, "ioi", "discrete-sae", cfg),
        "organism",
        model.cfg.n_layers,
        model.cfg.n_heads,
        truths,
        cfg.model_dump(mode="json"),
    )
    write_json(out / "circuit_ioi_discrete-sae.json", doc)
    truth = truths[0]
    found = [h["head"] for h in doc["heads"][: len(truth.heads)]]
    roles = dict(_roles())
    lines = [f"{'rank':>4}  {'found':>6}  {'score':>5}   ground truth (path patching)"]
    gt_sorted = sorted(truth.heads, key=lambda n: (n.layer, n.head))
    for i in range(len(truth.heads)):
        h = doc["heads"][i]
        mark = "*" if h["in_ground_truth"] else " "
        gt = gt_sorted[i]
        lines.append(f"{i + 1:>4}  {h['head']:>5}{mark}  {h['score']:>5.0f}   {gt!s:>5} {roles.get(str(gt), '')}")
    hits = sum(1 for h in found if h in {str(n) for n in truth.heads})
    s = doc["by_ground_truth"]
    lines.append(
        f"{hits} of the top {len(found)} are ground-truth heads (*). Node ROC AUC: "
        + ", ".join(f"{name} {v['roc_auc']:.3f}" for name, v in s.items())
        + f"; {doc['seconds']:.1f} s end to end, SAE training included."
    )
    lines.append(
        "Compare every method (ACDC, patching, EAP, attention SAEs): notebooks/ioi_circuit.ipynb, "
        "'saelab bench circuits'."
    )
    return lines


def _roles() -> list[tuple[str, str]]:
    import json

    from circuits.ground_truth import organism_circuits_file

    data = json.loads(organism_circuits_file().read_text())["ioi"]
    return [(n["node"], n["role"]) for n in data["nodes"]]
