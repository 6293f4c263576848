"""The sweeps O'Neill & Bui report, for the discrete-SAE finder, over several seeds.

- ``n-train``: prompts the SAE is trained on (5, 10, 25, 100, 250; the paper: 10);
- ``n-prompts``: positive (and as many negative) prompts the codes are counted on (5, 10,
  25, 100, 250; the paper: 250), the SAE still trained on 10 of them (fewer if there are
  fewer than 10 in all);
- ``n-codes``: codebook size (5 to 250; the paper: 200);
- ``family``: every registry family in place of the paper's ReLU SAE, same code budget;
  ``paper`` is the paper's SAE on raw head vectors, ``paper-scaled`` the same SAE on head
  vectors scaled to mean norm √d (the convention every family is trained under);
- ``position``: head outputs averaged over positions (the paper) or at the last one.

Every other setting stays at the paper's values. Each point is run with seeds 0..n−1
(each seed draws its own prompts, SAE training subset and initialisation) and reported
as mean ± sd of the node ROC AUC against every ground truth.
"""

from __future__ import annotations

import statistics

from sae.progress import progress_bar

#: the sweeps' values; ``family`` is filled from the registry when asked (``sweep_values``)
SWEEPS: dict[str, tuple] = {
    "n-train": (5, 10, 25, 100, 250),
    "n-prompts": (5, 10, 25, 100, 250),
    "n-codes": (5, 10, 25, 50, 100, 200, 250),
    "family": ("paper", "paper-scaled"),
    "position": ("mean", "last"),
}


def sweep_values(parameter: str) -> tuple:
    """The values a sweep runs over; ``family``: the paper's SAE (raw and scaled inputs), then
    every trainable family of the registry."""
    if parameter not in SWEEPS:
        raise ValueError(f"unknown sweep {parameter!r}; known: {', '.join(SWEEPS)}")
    if parameter == "family":
        from sae.architectures import trainable

        return (*SWEEPS["family"], *trainable())
    return SWEEPS[parameter]


def point_config(base, parameter: str, value):
    """The MethodConfig of one sweep point."""
    if parameter == "n-train":
        return base.model_copy(update={"n_train": value, "n_prompts": max(base.n_prompts, -(-value // 2))})
    if parameter == "n-prompts":
        return base.model_copy(update={"n_prompts": value, "n_train": min(base.n_train, 2 * value)})
    if parameter == "n-codes":
        return base.model_copy(update={"n_codes": value})
    if parameter == "family":
        if value in ("paper", "paper-scaled"):
            return base.model_copy(update={"family": None, "scale_inputs": value == "paper-scaled"})
        return base.model_copy(update={"family": value})
    if parameter == "position":
        return base.model_copy(update={"position": value})
    raise ValueError(f"unknown sweep {parameter!r}; known: {', '.join(SWEEPS)}")


def _sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def run_sweep(
    model,
    tokenizer,
    task: str,
    parameter: str,
    base,
    truths: list,
    model_name: str,
    values=None,
    n_seeds: int = 5,
    progress: bool = False,
) -> dict:
    """The ``circuit`` results document of one sweep (see ``circuits.results``)."""
    from circuits.methods import evaluate, run_method
    from circuits.results import SCHEMA_VERSION

    values = tuple(values or sweep_values(parameter))
    rows = []
    bar = progress_bar(total=len(values) * n_seeds, desc=f"sweep {parameter}", disable=not progress, leave=False)
    for value in values:
        cfg = point_config(base, parameter, value)
        per_truth: dict[str, list[float]] = {t.name: [] for t in truths}
        edge_method: dict[str, list[float]] = {t.name: [] for t in truths}
        seconds, train_rows_empty = [], []
        for seed in range(n_seeds):
            res = run_method(model, tokenizer, task, "discrete-sae", cfg.model_copy(update={"seed": seed}))
            seconds.append(res.seconds)
            train_rows_empty.append(res.details["codebook"]["train_rows_without_code"])
            for t in truths:
                scored = evaluate(res, t)
                per_truth[t.name].append(scored["roc_auc"])
                edge_method[t.name].append(scored["edge_method_roc_auc"])
            bar.update(1)
        rows.append(
            {
                "value": value,
                "n_prompts": cfg.n_prompts,
                "seconds_mean": statistics.mean(seconds),
                "train_rows_without_code_mean": statistics.mean(train_rows_empty),
                "by_ground_truth": {
                    name: {
                        "roc_auc": v,
                        "roc_auc_mean": statistics.mean(v),
                        "roc_auc_sd": _sd(v),
                        "edge_method_roc_auc_mean": statistics.mean(edge_method[name]),
                    }
                    for name, v in per_truth.items()
                },
            }
        )
    bar.close()
    primary = truths[0].name if truths else None
    for row in rows:  # the primary ground truth's numbers at the top of each row
        if primary:
            row.update({k: row["by_ground_truth"][primary][k] for k in ("roc_auc_mean", "roc_auc_sd", "roc_auc")})
    return {
        "kind": "circuit",
        "schema_version": SCHEMA_VERSION,
        "task": task,
        "model": model_name,
        "n_layers": model.cfg.n_layers,
        "n_heads": model.cfg.n_heads,
        "method": "discrete-sae",
        "hook": "blocks.L.attn.hook_result (z_h W_O^h)",
        "sae": "per sweep point",
        "config": base.model_dump(mode="json"),
        "ground_truth": primary,
        "sweep": {
            "parameter": parameter,
            "values": list(values),
            "seeds": list(range(n_seeds)),
            "ground_truth": primary,
            "rows": rows,
        },
    }
