"""A second ground truth for the organism: the smallest faithful head set, by greedy removal.

Start from every head. Repeatedly mean-ablate the one head whose removal costs the task
metric least; stop before the remaining set would recover less than ``target`` (80%) of
the full model's metric. MLPs stay in place, as in Wang et al.'s faithfulness tests. The
result depends only on the model and the task's prompts, not on any method under test.

``python -m circuits.faithfulness_search`` regenerates
``circuits/ground_truth/organism_faithfulness.json``.
"""

from __future__ import annotations

import argparse
import json

from tqdm.auto import tqdm

from circuits.ablation import MeanAblator
from circuits.tasks import TASKS

N_PROMPTS = 120
SEED = 7
TARGET = 0.8


def greedy_heads(model, batch, metric, target: float = TARGET, progress: bool = True) -> dict:
    ablator = MeanAblator(model, batch, metric)
    heads = [(layer, h) for layer in range(model.cfg.n_layers) for h in range(model.cfg.n_heads)]
    keep = list(heads)
    trace = []
    bar = tqdm(total=len(heads), desc="faithfulness search", disable=not progress, leave=False)
    while len(keep) > 1:
        removed = set(heads) - set(keep)
        costs = {h: ablator.run(removed | {h}) for h in keep}
        best = max(keep, key=lambda h: (costs[h], -h[0], -h[1]))
        recovered = costs[best] / ablator.full
        if recovered < target:
            break
        keep.remove(best)
        trace.append({"removed": f"{best[0]}.{best[1]}", "recovered": round(recovered, 4)})
        bar.update(1)
    bar.close()
    final = ablator.run(set(heads) - set(keep)) / ablator.full
    return {"nodes": [{"node": f"{layer}.{h}", "layer": layer, "head": h, "role": "faithful"} for layer, h in keep],
            "recovers": final, "full_metric": ablator.full, "removal_order": trace}


def search(model, tokenizer, progress: bool = True) -> dict:
    out = {"method": "greedy mean-ablation of heads (least costly first) while >= 80% of the metric is recovered",
           "target": TARGET, "n_prompts": N_PROMPTS, "seed": SEED,
           "ablation": "mean over the corrupted prompts of the same template, per position"}
    for task, key in (("ioi", "ioi"), ("greater-than", "greater_than")):
        module = TASKS[task]
        batch = module.make_batch(tokenizer, N_PROMPTS, seed=SEED)
        out[key] = {"task": task, **greedy_heads(model, batch, module.metric, progress=progress)}
    return out


def main(argv: list[str] | None = None) -> int:
    from circuits.ground_truth import organism_faithfulness_file
    from sae.atomic import write_json
    from sae.model import load_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(organism_faithfulness_file()))
    args = parser.parse_args(argv)
    model, tokenizer = load_model("organism")
    result = search(model, tokenizer)
    write_json(args.out, result)
    print(json.dumps({k: [n["node"] for n in v["nodes"]] for k, v in result.items() if isinstance(v, dict) and "nodes" in v}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
