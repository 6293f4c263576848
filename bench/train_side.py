"""saelab's side of ``saelab bench train``, in a process of its own like every peer's.

Reads the same JSON payload as the peer scripts (``bench/peers/*_train.py``) on stdin
(plus ``kernel``: ``sparse`` or ``dense``, and ``family``, TopK when absent) and prints one
JSON line: the median step of a real ``Trainer`` with one SAE of that family, the same 10%
of latents held dead at every step, and the process's peak RSS. A threshold family
(``jumprelu_ste``, ``gated``) has no k: with ``state: trained`` (the default) its thresholds
are set from the first batch so that about k latents fire per row, as in a trained SAE;
with ``state: init`` it keeps its initialisation, where about half of them fire.
Run as ``python -m bench.train_side``.
"""

from __future__ import annotations

import tempfile

import torch

from bench.peer_timing import median_step_seconds, read_payload, report, shared_batches, silence_dead


@torch.no_grad()
def fire_about_k(sae, x: torch.Tensor, k: int) -> None:
    """Thresholds at each latent's (1 − k/d_sae) quantile of ``x``'s pre-activations, so that
    about k latents fire per row: JumpReLU's θ, Gated's gate bias (the gate opens at π_gate > 0)."""
    rank = max(1, round(x.shape[0] * (1 - k / sae.cfg.d_sae)))
    proj = sae.encoder_input(x) @ sae.W_enc
    if hasattr(sae, "log_threshold"):
        sae.log_threshold.copy_((proj + sae.b_enc).kthvalue(rank, dim=0).values.clamp_min(1e-6).log())
    else:
        sae.b_gate.copy_(-proj.kthvalue(rank, dim=0).values)


def build(p: dict):
    """The payload's SAE: TopK with k, or a threshold family in the payload's ``state``."""
    from sae.architectures import sae_class

    family = p.get("family", "topk")
    cls = sae_class(family)
    torch.manual_seed(0)
    k = {"k": p["k"]} if "k" in cls.config_class.model_fields else {}
    sae = cls(cls.config_class(d_in=p["d_in"], d_sae=p["d_sae"], **k, kernel=p["kernel"], b_dec_init="zeros"))
    if not k and p.get("state", "trained") == "trained":
        fire_about_k(sae, shared_batches(p)[0], p["k"])
    if k:  # a TopK-like family: its dead latents as the peers' (threshold families have their own state)
        silence_dead(p, sae.b_enc, sae.W_enc.T)
    return family, sae.to(p["device"])


def main() -> None:
    from sae.trainer import Member, Trainer, TrainerConfig

    p = read_payload()
    batches = shared_batches(p)
    device = p["device"]
    family, sae = build(p)
    tcfg = TrainerConfig(
        lr=p["lr"], warmup_steps=0, decay_fraction=0.0, wandb_project=None, log_every=10**9, checkpoint_every=0
    )
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer([Member.reading(family, sae)], tcfg, tmp, progress=False)
        member = trainer.members[0]
        member.since_fired = member.since_fired.to(device)
        n_dead = int(p["dead_fraction"] * p["d_sae"])

        def step(i, x):
            since = member.since_fired
            since.zero_()
            since[:n_dead] = tcfg.dead_after_tokens  # the same latents dead at every step
            trainer.train_step({"x": x}, total_steps=10**9)

        seconds = median_step_seconds(step, batches, p["steps"], device)
    report(seconds, p["steps"], kernel=p["kernel"], family=family)


if __name__ == "__main__":
    main()
