"""parity: final held-out FVU of the fused sparse kernels against the dense autograd path.

Per-step equality is what tests/test_kernels.py checks (values, indices, every gradient at
1e-5). This asks the question that matters after thousands of steps, where float rounding
in different summation orders can compound: does a run trained with ``kernel: sparse``
end where the same run with ``kernel: dense`` ends? Every SAE of the organism sweep config
whose family has a sparse path (``Family.sparse_kernel`` in the registry) is trained twice,
side by side on one activation stream, from the same initial weights (one ``seed`` per twin
pair); both are scored on the same held-out rows. Pass: |FVU_sparse / FVU_dense − 1| ≤ 1% for every SAE.

Twins agree to the last bit for the first steps and then drift apart by float rounding;
once a latent dies in one twin and not the other, their trajectories part for good, and a
single seed can end ~1% apart with neither path at fault (the organism sweep's TopK at seed
1001: 1.24%, its dense twin the outlier over seeds; seeds 1000 and 1002: 0.02% and 0.04%).
So with ``--seeds N`` every SAE is trained as N twin pairs, and the verdict is on the FVU
averaged over the seeds, the quantity a user's result depends on; every pair's ratio is
reported beside it, and ``worst_pair_ratio`` names the widest.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "sweep_organism.yaml"
TOLERANCE = 0.01


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=str(CONFIG), help="a 'saelab train' config (default: the organism sweep)")
    parser.add_argument("--n-tokens", type=int, default=None, help="training tokens (default: the config's)")
    parser.add_argument("--heldout-tokens", type=int, default=None, help="held-out rows (default: the config's)")
    parser.add_argument("--seeds", type=int, default=1, help="twin pairs per SAE, from seeds 1000 + i + 100 s")
    parser.add_argument("--out", default=None, help="keep the run here (default: a temporary directory)")


def twin_config(data: dict, n_tokens: int | None, heldout_tokens: int | None, seeds: int = 1) -> dict:
    """The config with every sparse-family SAE (the i-th of the config) replaced by ``seeds``
    (sparse, dense) pairs of twins, named ``NAME@sS.KERNEL`` and seeded 1000 + i + 100 s."""
    from sae.architectures import family
    from sae.train_run import SAESpec

    saes = []
    for i, raw in enumerate(data["saes"]):
        spec = SAESpec.model_validate(raw)
        if not family(spec.sae.architecture).sparse_kernel:
            continue
        for s in range(seeds):
            seed = 1000 + i + 100 * s
            for kernel in ("sparse", "dense"):
                saes.append(
                    {
                        **raw,
                        "name": f"{spec.resolved_name()}@s{seed}.{kernel}",
                        "seed": seed,
                        "sae": {**raw["sae"], "kernel": kernel},
                    }
                )
    out = {**data, "saes": saes}
    if n_tokens is not None:
        out["data"] = {**data.get("data", {}), "n_tokens": n_tokens}
    if heldout_tokens is not None:
        out["heldout"] = {**(data.get("heldout") or {}), "n_tokens": heldout_tokens}
    return out


def compare(summary: dict) -> list[dict]:
    """One row per SAE: its FVUs and L0s averaged over the twin pairs' seeds, the ratio of
    the means and whether it is within the tolerance, and every pair's own ratio."""
    scores = summary["saes"]
    pairs: dict[str, list[tuple[int, dict, dict]]] = {}
    for name in sorted(n for n in scores if n.endswith(".sparse")):
        twin = name.removesuffix(".sparse")
        base, seed = twin.rsplit("@s", 1)
        pairs.setdefault(base, []).append((int(seed), scores[name], scores[f"{twin}.dense"]))

    def mean(scored: list[dict], key: str) -> float:
        return sum(s[key] for s in scored) / len(scored)

    rows = []
    for base, runs in pairs.items():
        sparse, dense = [s for _, s, _ in runs], [d for _, _, d in runs]
        ratio = mean(sparse, "fvu") / mean(dense, "fvu")
        by_seed = {str(seed): s["fvu"] / d["fvu"] for seed, s, d in runs}
        rows.append(
            {
                "sae": base,
                "architecture": sparse[0]["architecture"],
                "seeds": len(runs),
                "fvu_sparse": mean(sparse, "fvu"),
                "fvu_dense": mean(dense, "fvu"),
                "fvu_ratio": ratio,
                "l0_sparse": mean(sparse, "l0"),
                "l0_dense": mean(dense, "l0"),
                "within_1pct": abs(ratio - 1) <= TOLERANCE,
                "worst_pair_ratio": max(by_seed.values(), key=lambda r: abs(r - 1)),
                "fvu_ratio_by_seed": by_seed,
            }
        )
    return rows


def run(args: argparse.Namespace) -> list[dict]:
    from sae.architectures import families
    from sae.config import build_config, read_yaml
    from sae.errors import ConfigError
    from sae.train_run import RunConfig, train

    data = read_yaml(args.config)
    if args.seeds < 1:
        raise ConfigError(f"--seeds must be at least 1 (got {args.seeds})")
    twins = twin_config(data, args.n_tokens, args.heldout_tokens, args.seeds)
    if not twins["saes"]:
        sparse = ", ".join(f.name for f in families(trainable=True) if f.sparse_kernel)
        raise ConfigError(f"{args.config}: no SAE of a sparse family ({sparse})")
    device = getattr(args, "device", "cpu")
    twins["trainer"] = {**twins.get("trainer", {}), "device": device, "wandb_project": None}
    cfg = build_config(RunConfig, twins, args.config)
    with tempfile.TemporaryDirectory() as tmp:
        summary = train(cfg, Path(args.out) if args.out else Path(tmp) / "run", progress=not args.json)
    run_facts = {
        "device": device,
        "train_tokens": summary["train_tokens"],
        "train_steps": summary["train_steps"],
        "heldout_rows": summary["heldout_rows"],
        "train_seconds": summary["seconds"]["train"],
    }
    return [{**row, **run_facts} for row in compare(summary)]
