"""train: SAE training tokens/s, saelab's fused sparse TopK against its dense path and SAELens.

Every side trains a TopK SAE on the same random activations (regenerated from one seed
by the same torch wheel), with the same hyperparameters: d_in 768, k 32, batch 4096,
fp32, Adam, gradient clipping at 1, AuxK (k_aux = d_in/2, coefficient 1/32) with the
same 10% of latents marked dead at every step. A step is what each library's trainer
does per batch: forward, losses, backward, clipping, the optimizer step, and (saelab)
the decoder-norm constraint. The sides alternate within one invocation, on the same
thread count; the median step of each round is kept and the best round reported, so a
noisy neighbour slows all sides alike rather than one.

The denominators are pinned: the dense path is plain autograd (TopK values scattered
into dense ``[batch, d_sae]`` codes, a dense decoder GEMM), the GEMM is the best of at
least 5 ``torch.addmm(b_enc, x, W_enc)``, and the peer runs SAELens 6.54.12 in
``bench/.peers/saelens`` on the same torch.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

SIZES = (8192, 16384)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--d-in", type=int, default=768)
    parser.add_argument("--d-sae", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per round (after 2 warm-up steps)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of all sides")
    parser.add_argument("--dead-fraction", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-peers", action="store_true", help="skip SAELens")
    parser.add_argument("--no-dense", action="store_true", help="skip saelab's dense path")


def activations(n: int, batch: int, d_in: int, seed: int, device: str) -> list[torch.Tensor]:
    """The shared data: ``n`` batches of standard-normal activations from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, d_in, generator=gen).to(device) for _ in range(n)]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def encoder_gemm_seconds(d_in: int, d_sae: int, batch: int, device: str, repeats: int = 7) -> float:
    """Best of ``repeats`` bare encoder GEMMs, ``addmm(b_enc, x, W_enc)``: the roofline's denominator."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, d_in, generator=gen).to(device)
    W = torch.randn(d_in, d_sae, generator=gen).to(device)
    b = torch.zeros(d_sae, device=device)
    torch.addmm(b, x, W)
    best = float("inf")
    for _ in range(max(5, repeats)):
        _sync(device)
        start = time.perf_counter()
        torch.addmm(b, x, W)
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best


class SaelabSide:
    """A real saelab Trainer with one TopK SAE, stepped on the shared batches."""

    def __init__(self, d_in: int, d_sae: int, k: int, kernel: str, dead_fraction: float, device: str, tmp):
        from sae.architectures import sae_class
        from sae.trainer import Member, Trainer, TrainerConfig

        cls = sae_class("topk")
        torch.manual_seed(0)
        sae = cls(cls.config_class(d_in=d_in, d_sae=d_sae, k=k, kernel=kernel, b_dec_init="zeros")).to(device)
        cfg = TrainerConfig(
            lr=2e-4, warmup_steps=0, decay_fraction=0.0, wandb_project=None, log_every=10**9, checkpoint_every=0
        )
        self.trainer = Trainer([Member.reading("topk", sae)], cfg, tmp, progress=False)
        self.member = self.trainer.members[0]
        self.member.since_fired = self.member.since_fired.to(device)
        self.n_dead = int(dead_fraction * d_sae)
        self.device = device

    def step(self, x: torch.Tensor) -> None:
        since = self.member.since_fired
        since.zero_()
        since[: self.n_dead] = self.trainer.cfg.dead_after_tokens  # the same latents dead at every step
        self.trainer.train_step({"x": x}, total_steps=10**9)
        _sync(self.device)


def time_steps(step, batches: list[torch.Tensor], steps: int) -> float:
    """Median seconds of ``steps`` steps after two warm-up steps."""
    for x in batches[:2]:
        step(x)
    times = []
    for i in range(steps):
        start = time.perf_counter()
        step(batches[i % len(batches)])
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(args: argparse.Namespace, d_sae: int) -> dict:
    import tempfile

    from bench.peers import run_peer

    device = getattr(args, "device", "cpu")
    torch.set_num_threads(args.threads)
    batches = activations(4, args.batch_size, args.d_in, args.seed, device)
    kernels = ["sparse"] + ([] if args.no_dense else ["dense"])
    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        sides = {
            kernel: SaelabSide(args.d_in, d_sae, args.k, kernel, args.dead_fraction, device, tmp) for kernel in kernels
        }
        for _ in range(args.rounds):  # alternate, so drift hits every side alike
            for kernel, side in sides.items():
                best[kernel] = min(best.get(kernel, float("inf")), time_steps(side.step, batches, args.steps))
            if not args.no_peers:
                got = run_peer(
                    "saelens_train.py",
                    {
                        "d_in": args.d_in,
                        "d_sae": d_sae,
                        "k": args.k,
                        "batch_size": args.batch_size,
                        "steps": args.steps,
                        "dead_fraction": args.dead_fraction,
                        "threads": args.threads,
                        "seed": args.seed,
                        "device": device,
                        "lr": 2e-4,
                    },
                )
                best["saelens"] = min(best.get("saelens", float("inf")), got["median_step_seconds"])
                peer_version = got["sae_lens_version"]
    gemm = encoder_gemm_seconds(args.d_in, d_sae, args.batch_size, device)
    tps = {side: args.batch_size / seconds for side, seconds in best.items()}
    row = {
        "d_in": args.d_in,
        "d_sae": d_sae,
        "k": args.k,
        "batch_size": args.batch_size,
        "device": device,
        "threads": args.threads,
        "saelab_tokens_per_s": tps["sparse"],
        "saelab_step_s": best["sparse"],
        "encoder_gemm_s": gemm,
        "step_over_encoder_gemm": best["sparse"] / gemm,
    }
    if "dense" in tps:
        row.update({"saelab_dense_tokens_per_s": tps["dense"], "sparse_over_dense": tps["sparse"] / tps["dense"]})
    if "saelens" in tps:
        row.update(
            {
                "saelens_tokens_per_s": tps["saelens"],
                "speedup_vs_saelens": tps["sparse"] / tps["saelens"],
                "saelens_version": peer_version,
            }
        )
    return row


def run(args: argparse.Namespace) -> list[dict]:
    return [measure(args, d_sae) for d_sae in args.d_sae]
