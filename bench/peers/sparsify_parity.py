"""Peer side of ``saelab bench peers``: sparsify 1.3.3 trains a TopK SAE or (skip) transcoder.

Runs in bench/.peers/sparsify. JSON payload on stdin (see ``bench/peer_parity.py``); prints
one JSON line. sparsify trains only inside forward hooks of a Hugging Face model
(``sparsify.Trainer``), so it cannot read a tensor stream; this script runs the body of
that hook and of the step that follows it in ``Trainer.fit`` (sparsify 1.3.3,
``trainer.py``), unchanged, on the shared rows in file order:

- step 0: ``b_dec`` = mean of the target rows; transcoders also set the encoder bias to
  −mean(x)·W_encᵀ;
- every step: unit-norm decoder rows (SAEs), forward with ``y`` and the unchunked batch's
  total variance, loss = FVU + auxk_alpha·AuxK + multi_topk_fvu/8, backward, removal of the
  decoder gradient parallel to its rows (SAEs), optimiser step, zero_grad, scheduler step,
  dead-latent counters (tokens since fired, against ``dead_feature_threshold``).

Settings: sparsify's documented defaults (``SparseCoderConfig``/``TrainConfig``): the
``signum`` optimiser (SignSGD in a ScheduleFree wrapper, momentum 0.95, lr 5e-3/√(n/2¹⁴)),
which has no schedule to match, ``auxk_alpha`` 0, no multi-TopK, bf16 autocast only on
CUDA; only the shape (d_in, num_latents, k) and ``transcode``/``skip_connection`` are set,
and the payload's ``lr_scale`` multiplies the default lr (the harness's lr search, the same
grid of factors of its own default on the lab's side; 1 is sparsify's default).
The saved weights are ScheduleFree's averaged ones (``optimizer.eval()``, as sparsify's
checkpoint writes them), and held-out outputs come from ``SparseCoder.forward``.
"""

import sys
import time
from dataclasses import asdict
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
from schedulefree import ScheduleFreeWrapper
from sparsify import SparseCoder, SparseCoderConfig, TrainConfig
from sparsify.sign_sgd import SignSGD

from bench.peer_stream import (
    TimedBatches,
    batches,
    begin,
    finish,
    passes,
    plain,
    read,
)


def main():
    p, x, _ = begin()  # seeds torch: sparsify seeds each coder with init_seeds (default [0])
    transcode = p["peer_family"] in ("transcoder", "skip_transcoder")
    y = read(p["stream"], "train", p["hook_out"])[: p["n_rows"]] if transcode else x
    sae_cfg = SparseCoderConfig(
        num_latents=p["d_sae"],
        k=p["k"],
        transcode=transcode,
        skip_connection=p["peer_family"] == "skip_transcoder",
    )
    cfg = TrainConfig(sae=sae_cfg, batch_size=p["batch_size"])
    sae = SparseCoder(x.shape[1], sae_cfg, "cpu", dtype=torch.float32)
    # Trainer.__init__, case "signum"
    default_lr = cfg.lr or 5e-3 / (sae.num_latents / (2**14)) ** 0.5
    # the lr search (peer_parity.lr_search) scales the default; 1 is sparsify's own
    opt = ScheduleFreeWrapper(
        SignSGD([{"params": sae.parameters(), "lr": default_lr * p.get("lr_scale", 1.0)}]),
        momentum=0.95,
    )
    opt.train()
    schedulers = []
    since_fired = torch.zeros(sae.num_latents, dtype=torch.long)
    data = TimedBatches(batches({"x": x, "y": y}, p["batch_size"], passes(p)))
    started = time.perf_counter()
    for step, batch in enumerate(data):
        inputs, outputs = batch["x"], batch["y"]
        if step == 0:  # the hook's first-step initialisation
            if transcode:
                mean = inputs.mean(0)
                sae.encoder.bias.data = -mean @ sae.encoder.weight.data.T
            sae.b_dec.data = outputs.mean(0)
        if sae_cfg.normalize_decoder and not transcode:
            sae.set_decoder_norm_to_unit_norm()
        dead_mask = since_fired > cfg.dead_feature_threshold if cfg.auxk_alpha > 0 else None
        total_variance = (outputs - outputs.mean(0)).pow(2).sum()
        out = sae(x=inputs, y=outputs, dead_mask=dead_mask, total_variance=total_variance)
        did_fire = torch.zeros(sae.num_latents, dtype=torch.bool)
        did_fire[out.latent_indices.flatten()] = True
        loss = out.fvu + cfg.auxk_alpha * out.auxk_loss + out.multi_topk_fvu / 8
        loss.div(cfg.grad_acc_steps * cfg.micro_acc_steps).backward()
        if sae_cfg.normalize_decoder and not transcode:
            sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        opt.zero_grad()
        for scheduler in schedulers:
            scheduler.step()
        with torch.no_grad():
            since_fired += inputs.shape[0]
            since_fired[did_fire] = 0
    train_seconds = time.perf_counter() - started
    opt.eval()  # ScheduleFree's averaged weights, what sparsify's checkpoint saves
    sae.eval()

    def run(rows):
        out = sae(rows)  # SAE: y = x
        codes = torch.zeros(rows.shape[0], sae.num_latents).scatter_(1, out.latent_indices, out.latent_acts)
        return out.sae_out, codes

    finish(
        p,
        run,
        data,
        train_seconds,
        version("eai-sparsify"),
        {
            "train": plain(asdict(cfg)),
            "optimizer": "signum: ScheduleFreeWrapper(SignSGD, momentum=0.95)",
            "lr": opt.param_groups[0]["lr"] if opt.param_groups else None,
            "default_lr": default_lr,
            "lr_scale": p.get("lr_scale", 1.0),
        },
    )


if __name__ == "__main__":
    main()
