"""saelab's side of ``saelab bench train``, in a process of its own like every peer's.

Reads the same JSON payload as the peer scripts (``bench/peers/*_train.py``) on stdin
(plus ``kernel``: ``sparse`` or ``dense``) and prints one JSON line: the median step of a
real ``Trainer`` with one TopK SAE, the same 10% of latents held dead at every step, and
the process's peak RSS. Run as ``python -m bench.train_side``.
"""

from __future__ import annotations

import tempfile

import torch

from bench.peer_timing import median_step_seconds, read_payload, report, shared_batches


def main() -> None:
    from sae.architectures import sae_class
    from sae.trainer import Member, Trainer, TrainerConfig

    p = read_payload()
    batches = shared_batches(p)
    device = p["device"]
    cls = sae_class("topk")
    torch.manual_seed(0)
    cfg = cls.config_class(d_in=p["d_in"], d_sae=p["d_sae"], k=p["k"], kernel=p["kernel"], b_dec_init="zeros")
    sae = cls(cfg).to(device)
    tcfg = TrainerConfig(
        lr=p["lr"], warmup_steps=0, decay_fraction=0.0, wandb_project=None, log_every=10**9, checkpoint_every=0
    )
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer([Member.reading("topk", sae)], tcfg, tmp, progress=False)
        member = trainer.members[0]
        member.since_fired = member.since_fired.to(device)
        n_dead = int(p["dead_fraction"] * p["d_sae"])

        def step(i, x):
            since = member.since_fired
            since.zero_()
            since[:n_dead] = tcfg.dead_after_tokens  # the same latents dead at every step
            trainer.train_step({"x": x}, total_steps=10**9)

        seconds = median_step_seconds(step, batches, p["steps"], device)
    report(seconds, p["steps"], kernel=p["kernel"])


if __name__ == "__main__":
    main()
