"""Peer side of ``saelab bench peers``: SAELens 6.54.12 trains one family on the shared stream.

Runs in bench/.peers/saelens. JSON payload on stdin (see ``bench/peer_parity.py``); prints
one JSON line. SAELens' own ``SAETrainer.fit`` runs the training (its step: forward with the
dead-latent mask, firing bookkeeping, backward, clip 1.0, Adam, lr scheduler), fed the shared
train rows in file order as its ``DataProvider``. Held-out outputs come from SAELens'
*inference* form (``save_inference_model`` then ``SAE.load_from_disk``: BatchTopK and
Matryoshka become a JumpReLU with the learned threshold), written for saelab to score.

Settings: every field at SAELens' documented default except the shape (d_in, d_sae, k,
Matryoshka widths), the sparsity coefficient under search (JumpReLU ``l0_coefficient``,
Gated ``l1_coefficient``), and the learning-rate schedule, set to the lab's (same lr, linear
warm-up steps, linear decay to 0 over the same final steps: SAELens' "constant" scheduler
with ``lr_warm_up_steps`` and ``lr_decay_steps``).
"""

import sys
import tempfile
import time
from dataclasses import asdict
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sae_lens import SAE
from sae_lens.config import SAETrainerConfig
from sae_lens.saes.batchtopk_sae import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig
from sae_lens.saes.gated_sae import GatedTrainingSAE, GatedTrainingSAEConfig
from sae_lens.saes.jumprelu_sae import JumpReLUTrainingSAE, JumpReLUTrainingSAEConfig
from sae_lens.saes.matryoshka_batchtopk_sae import (
    MatryoshkaBatchTopKTrainingSAE,
    MatryoshkaBatchTopKTrainingSAEConfig,
)
from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
from sae_lens.training.sae_trainer import SAETrainer

from bench.peer_stream import (
    TimedBatches,
    batches,
    begin,
    encode_decode,
    finish,
    passes,
    plain,
)


def build(p: dict, d_in: int):
    shape = {"d_in": d_in, "d_sae": p["d_sae"], "dtype": "float32", "device": "cpu"}
    match p["peer_family"]:
        case "topk":
            return TopKTrainingSAE(TopKTrainingSAEConfig(**shape, k=p["k"]))
        case "batchtopk":
            return BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(**shape, k=p["k"]))
        case "matryoshka_batchtopk":
            cfg = MatryoshkaBatchTopKTrainingSAEConfig(**shape, k=p["k"], matryoshka_widths=p["matryoshka_widths"])
            return MatryoshkaBatchTopKTrainingSAE(cfg)
        case "jumprelu":
            return JumpReLUTrainingSAE(JumpReLUTrainingSAEConfig(**shape, l0_coefficient=p["coefficient"]))
        case "gated":
            return GatedTrainingSAE(GatedTrainingSAEConfig(**shape, l1_coefficient=p["coefficient"]))
    raise SystemExit(f"SAELens has no trainer for {p['peer_family']!r} here")


def main():
    p, x, steps = begin()
    sae = build(p, x.shape[1])
    trainer_cfg = SAETrainerConfig(
        total_training_samples=steps * p["batch_size"],
        train_batch_size_samples=p["batch_size"],
        lr=p["lr"],
        lr_end=p["lr"],  # the "constant" scheduler decays from lr itself
        lr_scheduler_name="constant",
        lr_warm_up_steps=p["warmup_steps"],
        lr_decay_steps=p["decay_steps"],
        device="cpu",
    )
    data = TimedBatches(batches(x, p["batch_size"], passes(p)))
    started = time.perf_counter()
    trainer = SAETrainer(trainer_cfg, sae, data)
    trainer.fit()
    train_seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        sae.save_inference_model(tmp)
        inference = SAE.load_from_disk(tmp, device="cpu")
    inference.eval()

    finish(
        p,
        encode_decode(inference),
        data,
        train_seconds,
        version("sae-lens"),
        {
            "sae": plain(sae.cfg.to_dict()),
            "trainer": plain(asdict(trainer_cfg)),
            "inference_architecture": type(inference).__name__,
        },
    )


if __name__ == "__main__":
    main()
