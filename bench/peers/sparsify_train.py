"""Peer side of the training benchmark: sparsify 1.3.3 TopK, stepped as its ``Trainer.fit`` steps.

Runs in bench/.peers/sparsify. Reads a JSON payload on stdin, prints one JSON line (median
step seconds, peak RSS). The step is the body of sparsify's hook and of the step after it
(sparsify 1.3.3 ``trainer.py``): unit-norm decoder rows, ``SparseCoder.forward`` with its
fused TopK encoder (``fused_encoder.py``: sparse backward through the chosen entries) and
its sparse decoder, the dead mask and AuxK, backward, removal of the decoder gradient
parallel to its rows, the optimiser step and ``zero_grad``, the dead-latent counters.

Its own fastest documented path on the bench's shapes: the default ``signum`` optimiser
(SignSGD inside ScheduleFree, lr 5e-3/√(d_sae/2¹⁴)); sparsify has no gradient clipping.
The one setting moved off its default is ``auxk_alpha`` = 1/32 (default 0), so that all
sides compute AuxK on the same 10% of dead latents; fp32 (its bf16 autocast is CUDA-only).
"""

import sys
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
from schedulefree import ScheduleFreeWrapper
from sparsify import SparseCoder, SparseCoderConfig
from sparsify.sign_sgd import SignSGD

from bench.peer_timing import dead_mask, median_step_seconds, read_payload, report, shared_batches, silence_dead

AUXK_ALPHA = 1 / 32


def main():
    p = read_payload()
    batches = shared_batches(p)
    torch.manual_seed(0)
    cfg = SparseCoderConfig(num_latents=p["d_sae"], k=p["k"])
    sae = SparseCoder(p["d_in"], cfg, p["device"], dtype=torch.float32)
    silence_dead(p, sae.encoder.bias, sae.encoder.weight)
    opt = ScheduleFreeWrapper(
        SignSGD([{"params": sae.parameters(), "lr": 5e-3 / (sae.num_latents / 2**14) ** 0.5}]), momentum=0.95
    )
    opt.train()
    dead = dead_mask(p)
    since_fired = torch.zeros(sae.num_latents, dtype=torch.long, device=p["device"])

    def step(i, x):
        if i == 0:
            sae.b_dec.data = x.mean(0)
        sae.set_decoder_norm_to_unit_norm()
        total_variance = (x - x.mean(0)).pow(2).sum()
        out = sae(x=x, y=x, dead_mask=dead, total_variance=total_variance)
        loss = out.fvu + AUXK_ALPHA * out.auxk_loss
        loss.backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        opt.zero_grad()
        with torch.no_grad():
            did_fire = torch.zeros(sae.num_latents, dtype=torch.bool, device=x.device)
            did_fire[out.latent_indices.flatten()] = True
            since_fired.add_(x.shape[0])
            since_fired[did_fire] = 0

    seconds = median_step_seconds(step, batches, p["steps"], p["device"])
    report(seconds, p["steps"], version=version("eai-sparsify"), optimizer="signum (SignSGD + ScheduleFree)")


if __name__ == "__main__":
    main()
