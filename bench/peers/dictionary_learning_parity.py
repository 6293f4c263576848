"""Peer side of ``saelab bench peers``: dictionary_learning 0.1.0 trains one family on the shared stream.

Runs in bench/.peers/dictionary_learning. JSON payload on stdin (see ``bench/peer_parity.py``);
prints one JSON line. dictionary_learning's own ``trainSAE`` loop runs the training, fed the
shared train rows in file order (its ``data`` iterable), with one trainer of the family's
class; held-out outputs come from the trained dictionary's ``encode``/``decode`` (its
inference path: BatchTopK and Matryoshka encode with the learned threshold by default,
TopK with a per-token top-k), written for saelab to score.

Settings: every trainer argument at its documented default except the shape (d_in, d_sae,
k, Matryoshka group fractions from the widths), the sparsity knob under search (JumpReLU
``target_l0``, Gated ``l1_penalty``) and the schedule, set to the lab's: ``lr``,
``warmup_steps``, ``decay_start = steps − decay_steps`` (dictionary_learning's decay is
linear to 0 at the end, as the lab's). Three settings scale with the run because their
defaults exceed a short run and would make the result meaningless: ``threshold_start_step``
(1000 by default, so the inference threshold of BatchTopK/Matryoshka would never be set;
set to the lr warm-up) with ``threshold_beta`` scaled alike (the EMA's horizon 1/(1 − β) is
1000 steps by default, equal to the start step; kept equal: ``peer_parity.threshold_ema``,
else θ stays near the first batch minimum and held-out L0 is half of k), and
``sparsity_warmup_steps`` (2000 by default, must be < steps; set to the lab's coefficient
warm-up).
"""

import json
import sys
import time
from importlib.metadata import version
from itertools import pairwise
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
from dictionary_learning.training import trainSAE

from bench.peer_stream import (
    TimedBatches,
    batches,
    begin,
    encode_decode,
    finish,
    passes,
    plain,
)


def trainer_config(p: dict, d_in: int, steps: int) -> dict:
    common = {
        "steps": steps,
        "activation_dim": d_in,
        "dict_size": p["d_sae"],
        "layer": 1,
        "lm_name": "organism",
        "lr": p["lr"],
        "warmup_steps": p["warmup_steps"],
        "decay_start": steps - p["decay_steps"] if p["decay_steps"] else None,
        "seed": p["seed"],
        "device": "cpu",
    }
    ema = {"threshold_start_step": p["threshold_start_step"], "threshold_beta": p["threshold_beta"]}
    match p["peer_family"]:
        case "topk":
            from dictionary_learning.trainers.top_k import TopKTrainer

            return {"trainer": TopKTrainer, **common, "k": p["k"]}
        case "batchtopk":
            from dictionary_learning.trainers.batch_top_k import BatchTopKTrainer

            return {"trainer": BatchTopKTrainer, **common, "k": p["k"], **ema}
        case "matryoshka_batchtopk":
            from dictionary_learning.trainers.matryoshka_batch_top_k import MatryoshkaBatchTopKTrainer

            edges = [0, *p["matryoshka_widths"]]
            fractions = [(b - a) / p["d_sae"] for a, b in pairwise(edges)]
            return {
                "trainer": MatryoshkaBatchTopKTrainer,
                **common,
                "k": p["k"],
                "group_fractions": fractions,
                **ema,
            }
        case "jumprelu":
            from dictionary_learning.trainers.jumprelu import JumpReluTrainer

            return {
                "trainer": JumpReluTrainer,
                **common,
                "target_l0": p["coefficient"],
                "sparsity_warmup_steps": p["sparsity_warmup_steps"],
            }
        case "gated":
            from dictionary_learning.trainers.gdm import GatedSAETrainer

            return {
                "trainer": GatedSAETrainer,
                **common,
                "l1_penalty": p["coefficient"],
                "sparsity_warmup_steps": p["sparsity_warmup_steps"],
            }
    raise SystemExit(f"dictionary_learning has no trainer for {p['peer_family']!r} here")


def main():
    p, x, steps = begin()
    cfg = trainer_config(p, x.shape[1], steps)
    # trainSAE builds the trainer from the dict (and pops "trainer"); keep ours for the row
    dumped = {k: (v.__name__ if k == "trainer" else v) for k, v in cfg.items()}
    data = TimedBatches(batches(x, p["batch_size"], passes(p)))
    started = time.perf_counter()
    # trainSAE returns nothing; with save_dir it writes ae.pt, which we read back
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        trainSAE(data=data, trainer_configs=[cfg], steps=steps, device="cpu", save_dir=tmp)
        train_seconds = time.perf_counter() - started
        state = torch.load(f"{tmp}/trainer_0/ae.pt", weights_only=True)
        saved_config = json.loads(Path(f"{tmp}/trainer_0/config.json").read_text())
    ae = build_dictionary(saved_config["trainer"], state)
    ae.eval()

    finish(
        p,
        encode_decode(ae),
        data,
        train_seconds,
        version("dictionary-learning"),
        {"trainer_arguments": plain(dumped), "trainer_config": plain(saved_config["trainer"])},
    )


def build_dictionary(trainer: dict, state: dict):
    """The trained dictionary, rebuilt from the saved ``ae.pt`` as the library saves it."""
    from dictionary_learning import dictionary
    from dictionary_learning.trainers import batch_top_k, matryoshka_batch_top_k, top_k

    classes = {
        "AutoEncoderTopK": top_k.AutoEncoderTopK,
        "BatchTopKSAE": batch_top_k.BatchTopKSAE,
        "MatryoshkaBatchTopKSAE": matryoshka_batch_top_k.MatryoshkaBatchTopKSAE,
        "JumpReluAutoEncoder": dictionary.JumpReluAutoEncoder,
        "GatedAutoEncoder": dictionary.GatedAutoEncoder,
    }
    cls = classes[trainer["dict_class"]]
    d_in, d_sae = trainer["activation_dim"], trainer["dict_size"]
    if trainer["dict_class"] in ("AutoEncoderTopK", "BatchTopKSAE"):
        ae = cls(d_in, d_sae, int(trainer["k"]))
    elif trainer["dict_class"] == "MatryoshkaBatchTopKSAE":
        ae = cls(d_in, d_sae, int(trainer["k"]), [int(s) for s in state["group_sizes"]])
    else:
        ae = cls(d_in, d_sae)
    ae.load_state_dict(state)
    return ae


if __name__ == "__main__":
    main()
