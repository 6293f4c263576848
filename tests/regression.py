"""The fixed-seed regression fixture: numbers that a refactor must leave unchanged.

One small training run on the organism (every trainable family on one residual hook,
measured on held-out tokens) and the circuit finders' ROC AUCs on IOI. The expected
figures in ``regression_expected.json`` were taken from the code before the
architecture refactor; ``tests/integration/test_regression.py`` re-derives them.

Rewrite the expectations only when a change is *meant* to move the numbers, and say so
in the commit: ``python tests/regression.py --write``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

EXPECTED = Path(__file__).resolve().parent / "regression_expected.json"

HOOK = "blocks.1.hook_resid_post"
#: every family trained today, at a matched budget; the ReLU coefficient gives L0 near k
FAMILIES = {
    "relu": {"architecture": "relu", "d_sae": 128, "l1_coefficient": 2.0},
    "topk": {"architecture": "topk", "d_sae": 128, "k": 8},
    "mutual_choice": {"architecture": "mutual_choice", "d_sae": 128, "k": 8},
    "feature_choice": {"architecture": "feature_choice", "d_sae": 128, "k": 8},
    "gsae": {"architecture": "gsae", "d_sae": 128, "k": 8},
    "vsae": {"architecture": "vsae", "d_sae": 128, "k": 8},
    "jumprelu_ste": {"architecture": "jumprelu_ste", "d_sae": 128},
    "gated": {"architecture": "gated", "d_sae": 128},
    "matryoshka_batchtopk": {"architecture": "matryoshka_batchtopk", "d_sae": 128, "k": 8},
}
RUN = {
    "data": {"model": "organism", "n_tokens": 24_576, "context_size": 32, "lm_batch_size": 64, "seed": 5},
    "saes": [
        {"name": name, "hook": HOOK, "sae": sae, "seed": 100 + i} for i, (name, sae) in enumerate(FAMILIES.items())
    ],
    "trainer": {"batch_size": 512, "wandb_project": None, "checkpoint_every": 0, "seed": 7},
    "heldout": {"n_tokens": 4096, "seed": 11},
}
CIRCUIT_METHODS = ("mean-diff", "discrete-sae")
CIRCUIT = {"n_prompts": 16, "seed": 2}


def measure_training(out_dir: Path, model, tokenizer) -> dict:
    """Held-out FVU and L0 of each family."""
    from sae.train_run import RunConfig, train

    summary = train(RunConfig.model_validate(RUN), out_dir, progress=False, model=model, tokenizer=tokenizer)
    return {name: {"fvu": row["fvu"], "l0": row["l0"]} for name, row in sorted(summary["saes"].items())}


def measure_circuits(model, tokenizer) -> dict:
    """Node ROC AUC of each method against the organism's path-patching ground truth."""
    from circuits import ground_truth
    from circuits.methods import MethodConfig, evaluate, run_method

    truth = ground_truth.resolve("organism", "ioi", "path_patching", model.cfg.n_layers, model.cfg.n_heads)[0]
    out = {}
    for method in CIRCUIT_METHODS:
        scored = evaluate(run_method(model, tokenizer, "ioi", method, MethodConfig(**CIRCUIT)), truth)
        out[method] = {"roc_auc": scored["roc_auc"]}
    return out


def measure(out_dir: Path, model=None, tokenizer=None) -> dict:
    from sae.model import load_model

    if model is None:
        model, tokenizer = load_model("organism")
    return {"training": measure_training(out_dir, model, tokenizer), "circuits": measure_circuits(model, tokenizer)}


if __name__ == "__main__":
    import tempfile

    import torch

    torch.set_num_threads(1)  # as the test runs it: thread count changes float summation order
    with tempfile.TemporaryDirectory() as tmp:
        figures = measure(Path(tmp) / "run")
    print(json.dumps(figures, indent=2))
    if "--write" in sys.argv:
        EXPECTED.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {EXPECTED}")
