"""Peer side of the training benchmark: dictionary_learning 0.1.0 TopK, ``TopKTrainer.update``.

Runs in bench/.peers/dictionary_learning. Reads a JSON payload on stdin, prints one JSON
line (median step seconds, peak RSS). The step is ``TopKTrainer.update`` itself (its
encoder's dense top-k, dense decoder, AuxK with its OpenAI normalisation at its default
coefficient 1/32, backward, parallel-gradient removal, clipping at 1, Adam, scheduler,
unit-norm decoder), with the same 10% of latents held dead by setting its
``num_tokens_since_fired`` counter before every step. The geometric-median ``b_dec``
initialisation of step 0 falls in the untimed warm-up; timed steps stay below
``threshold_start_step`` as in the first 1000 steps of any of its runs.
"""

import sys
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dictionary_learning.trainers.top_k import TopKTrainer

from bench.peer_timing import dead_mask, median_step_seconds, read_payload, report, shared_batches, silence_dead


def main():
    p = read_payload()
    batches = shared_batches(p)
    trainer = TopKTrainer(
        steps=10**6,
        activation_dim=p["d_in"],
        dict_size=p["d_sae"],
        k=p["k"],
        layer=1,
        lm_name="bench",
        lr=p["lr"],
        seed=0,
        device=p["device"],
    )
    silence_dead(p, trainer.ae.encoder.bias, trainer.ae.encoder.weight)
    dead = dead_mask(p)

    def step(i, x):
        counter = trainer.num_tokens_since_fired
        counter.zero_()
        counter[dead] = trainer.dead_feature_threshold
        trainer.update(i, x)

    seconds = median_step_seconds(step, batches, p["steps"], p["device"])
    report(seconds, p["steps"], version=version("dictionary-learning"), optimizer="Adam")


if __name__ == "__main__":
    main()
