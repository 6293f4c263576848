"""A second ground truth for the organism: the smallest faithful head set, by greedy removal.

Start from every head. Repeatedly mean-ablate the one head whose removal costs the task
metric least; stop before the remaining set would recover less than ``TARGET`` (80%) of
the metric. "Recovers" is normalised between the full model and the model with every
head ablated, (M(kept) − M(none)) / (M(all) − M(none)), so a metric that does not fall
to zero without the heads (MLPs alone, the mean-ablation baseline) cannot make a small
set look faithful. MLPs stay in place, as in Wang et al.'s faithfulness tests. The result
depends only on the model and the task's prompts, never on a method under test.

``python -m circuits.faithfulness_search [--model organism-b]`` regenerates
``circuits/ground_truth/<model>_faithfulness.json`` (the organism's by default);
``--check`` recomputes it and exits non-zero if the frozen file differs.
"""

from __future__ import annotations

import argparse
import json
import sys

from circuits.ablation import MeanAblator
from circuits.tasks import TASKS
from sae.model import model_device
from sae.progress import progress_bar

N_PROMPTS = 120
SEED = 7
TARGET = 0.8
SCHEMA_VERSION = 1


def greedy_heads(model, batch, metric, target: float = TARGET, progress: bool = True) -> dict:
    ablator = MeanAblator(model, batch, metric)
    heads = [(layer, h) for layer in range(model.cfg.n_layers) for h in range(model.cfg.n_heads)]
    none = ablator.run(heads)
    span = ablator.full - none

    def recovered(value: float) -> float:
        return (value - none) / span if span else 1.0

    keep = list(heads)
    trace = []
    bar = progress_bar(total=len(heads), desc="faithfulness search", disable=not progress, leave=False)
    while len(keep) > 1:
        removed = set(heads) - set(keep)
        costs = {h: ablator.run(removed | {h}) for h in keep}
        best = max(keep, key=lambda h: (costs[h], -h[0], -h[1]))
        if recovered(costs[best]) < target:
            break
        keep.remove(best)
        trace.append({"removed": f"{best[0]}.{best[1]}", "recovered": round(recovered(costs[best]), 4)})
        bar.update(1)
    bar.close()
    final = ablator.run(set(heads) - set(keep))
    return {
        "nodes": [{"node": f"{layer}.{h}", "layer": layer, "head": h, "role": "faithful"} for layer, h in keep],
        "recovers": round(recovered(final), 4),
        "full_metric": round(ablator.full, 4),
        "all_heads_ablated_metric": round(none, 4),
        "circuit_metric": round(final, 4),
        "removal_order": trace,
    }


def search(model, tokenizer, progress: bool = True, n_prompts: int = N_PROMPTS) -> dict:
    out = {
        "schema_version": SCHEMA_VERSION,
        "method": "greedy mean-ablation of heads (least costly first) while the kept heads recover >= 80% "
        "of the metric, normalised between all heads ablated (0) and none (1); MLPs kept",
        "target": TARGET,
        "n_prompts": n_prompts,
        "seed": SEED,
        "ablation": "mean over the corrupted prompts of the same template, per position",
    }
    for task, key in (("ioi", "ioi"), ("greater-than", "greater_than")):
        module = TASKS[task]
        batch = module.make_batch(tokenizer, n_prompts, seed=SEED, device=model_device(model))
        out[key] = {
            "task": task,
            "metric": module.metric.__name__,
            **greedy_heads(model, batch, module.metric, progress=progress),
        }
    return out


def _heads(doc: dict) -> dict[str, list[str]]:
    return {k: [n["node"] for n in v["nodes"]] for k, v in doc.items() if isinstance(v, dict) and "nodes" in v}


def main(argv: list[str] | None = None) -> int:
    from circuits.ground_truth import circuits_file, faithfulness_file
    from sae.atomic import write_json
    from sae.errors import ConfigError, SaelabError
    from sae.model import load_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default="organism", help="a model provider that ships circuits: organism (default), organism-b"
    )
    parser.add_argument("--out", help="where to write (default: circuits/ground_truth/<model>_faithfulness.json)")
    parser.add_argument("--check", action="store_true", help="recompute and compare with the frozen file")
    parser.add_argument(
        "--n-prompts", type=int, default=N_PROMPTS, help=f"prompts per task (default {N_PROMPTS}; --check: the file's)"
    )
    args = parser.parse_args(argv)
    if circuits_file(args.model) is None:
        raise ConfigError(f"--model {args.model!r}: not a model provider with frozen circuits (organism, organism-b)")
    if args.n_prompts < 2:
        raise ConfigError("--n-prompts must be at least 2")
    frozen_path = faithfulness_file(args.model)
    frozen = None
    if args.check:
        if not frozen_path.is_file():
            raise SaelabError(f"--check: {frozen_path} is missing; run without --check to write it")
        frozen = json.loads(frozen_path.read_text())
    model, tokenizer = load_model(args.model)
    result = search(model, tokenizer, n_prompts=frozen.get("n_prompts", N_PROMPTS) if frozen else args.n_prompts)
    if frozen is not None:
        same = _heads(frozen) == _heads(result)
        print(json.dumps({"reproduced": same, "frozen": _heads(frozen), "recomputed": _heads(result)}))
        return 0 if same else 1
    write_json(args.out or frozen_path, result)
    print(json.dumps(_heads(result)))
    return 0


if __name__ == "__main__":
    from sae.errors import SaelabError

    try:
        sys.exit(main())
    except SaelabError as e:
        print(f"faithfulness_search: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
