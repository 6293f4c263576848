"""Peer side of the training benchmark: SAELens 6.54.12 TopK, stepped as its SAETrainer steps.

Runs in bench/.peers/saelens. Reads a JSON payload on stdin, prints one JSON line with the median
step time and the process's peak RSS (``bench/peer_timing.py``). The step is the body of
``SAETrainer._train_step`` in SAELens 6.54.12
(training forward pass with the dead-neuron mask, firing bookkeeping, backward, clipping
at 1.0, Adam step, zero_grad, scheduler step), on the same random activations as the
saelab side (same seed, same torch wheel), with the same 10% of latents dead.
"""

import sys
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
from sae_lens.saes.sae import TrainStepInput
from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
from torch.optim import Adam
from torch.optim.lr_scheduler import LambdaLR

from bench.peer_timing import dead_mask, median_step_seconds, read_payload, report, shared_batches, silence_dead


def main():
    p = read_payload()
    device = p["device"]
    batches = shared_batches(p)
    torch.manual_seed(0)
    cfg = TopKTrainingSAEConfig(
        d_in=p["d_in"], d_sae=p["d_sae"], k=p["k"], dtype="float32", device=device, aux_loss_coefficient=1 / 32
    )
    sae = TopKTrainingSAE(cfg)
    silence_dead(p, sae.b_enc, sae.W_enc.T)
    optimizer = Adam(sae.parameters(), lr=p["lr"], betas=(0.9, 0.999))
    scheduler = LambdaLR(optimizer, lambda step: 1.0)  # constant: SAELens's default schedule
    dead = dead_mask(p)
    since_fired = torch.zeros(p["d_sae"], device=device)
    act_freq = torch.zeros(p["d_sae"], device=device)

    def step(i, sae_in):
        sae.train()
        out = sae.training_forward_pass(
            step_input=TrainStepInput(
                sae_in=sae_in, dead_neuron_mask=dead, coefficients={}, n_training_steps=0, is_logging_step=False
            )
        )
        with torch.no_grad():
            firing = out.feature_acts.bool().float()
            did_fire = firing.sum(-2).bool()
            since_fired.add_(1)
            since_fired[did_fire] = 0
            act_freq.add_(firing.sum(0))
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        scheduler.step()

    seconds = median_step_seconds(step, batches, p["steps"], device)
    report(seconds, p["steps"], version=version("sae-lens"), optimizer="Adam")


if __name__ == "__main__":
    main()
