"""parity: final held-out FVU of the fused sparse kernels against the dense autograd path.

Per-step equality is what tests/test_kernels.py checks (values, indices, every gradient at
1e-5). This asks the question that matters after thousands of steps, where float rounding
in different summation orders can compound: does a run trained with ``kernel: sparse``
end where the same run with ``kernel: dense`` ends? Every SAE of the organism sweep config
whose family has a sparse path is trained twice, side by side on one activation stream,
from the same initial weights (one ``seed`` per twin pair); both are scored on the same
held-out rows. Pass: |FVU_sparse / FVU_dense − 1| ≤ 1% for every pair.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

#: families whose training selection goes through ``sae.kernels`` (the others are dense by nature)
SPARSE_FAMILIES = ("topk", "mutual_choice", "feature_choice", "gsae", "vsae")
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "sweep_organism.yaml"
TOLERANCE = 0.01


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=str(CONFIG), help="a 'saelab train' config (default: the organism sweep)")
    parser.add_argument("--n-tokens", type=int, default=None, help="training tokens (default: the config's)")
    parser.add_argument("--heldout-tokens", type=int, default=None, help="held-out rows (default: the config's)")
    parser.add_argument("--out", default=None, help="keep the run here (default: a temporary directory)")


def twin_config(data: dict, n_tokens: int | None, heldout_tokens: int | None) -> dict:
    """The config with every sparse-family SAE replaced by a (sparse, dense) pair of twins."""
    from sae.train_run import SAESpec

    saes = []
    for i, raw in enumerate(data["saes"]):
        spec = SAESpec.model_validate(raw)
        if spec.sae.get("architecture") not in SPARSE_FAMILIES:
            continue
        for kernel in ("sparse", "dense"):
            saes.append({**raw, "name": f"{spec.resolved_name()}.{kernel}", "seed": 1000 + i,
                         "sae": {**spec.sae, "kernel": kernel}})
    out = {**data, "saes": saes}
    if n_tokens is not None:
        out["data"] = {**data.get("data", {}), "n_tokens": n_tokens}
    if heldout_tokens is not None:
        out["heldout"] = {**(data.get("heldout") or {}), "n_tokens": heldout_tokens}
    return out


def compare(summary: dict) -> list[dict]:
    """One row per twin pair: both FVUs and L0s, and whether they agree within the tolerance."""
    scores = summary["saes"]
    rows = []
    for name in sorted(n for n in scores if n.endswith(".sparse")):
        base = name.removesuffix(".sparse")
        sparse, dense = scores[name], scores[f"{base}.dense"]
        ratio = sparse["fvu"] / dense["fvu"]
        rows.append({"sae": base, "architecture": sparse["architecture"], "fvu_sparse": sparse["fvu"],
                     "fvu_dense": dense["fvu"], "fvu_ratio": ratio, "l0_sparse": sparse["l0"], "l0_dense": dense["l0"],
                     "within_1pct": abs(ratio - 1) <= TOLERANCE})
    return rows


def run(args: argparse.Namespace) -> list[dict]:
    import yaml

    from sae.config import build_config
    from sae.errors import ConfigError
    from sae.train_run import RunConfig, train

    try:
        data = yaml.safe_load(Path(args.config).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{args.config}: {e}") from None
    twins = twin_config(data, args.n_tokens, args.heldout_tokens)
    if not twins["saes"]:
        raise ConfigError(f"{args.config}: no SAE of a sparse family ({', '.join(SPARSE_FAMILIES)})")
    device = getattr(args, "device", "cpu")
    twins["trainer"] = {**twins.get("trainer", {}), "device": device, "wandb_project": None}
    cfg = build_config(RunConfig, twins, args.config)
    with tempfile.TemporaryDirectory() as tmp:
        summary = train(cfg, Path(args.out) if args.out else Path(tmp) / "run", progress=not args.json)
    run_facts = {"device": device, "train_tokens": summary["train_tokens"], "train_steps": summary["train_steps"],
                 "heldout_rows": summary["heldout_rows"], "train_seconds": summary["seconds"]["train"]}
    return [{**row, **run_facts} for row in compare(summary)]
