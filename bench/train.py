"""train: SAE training tokens/s and peak memory, saelab's fused sparse TopK against its dense path and three peers.

Every side trains a TopK SAE on the same random activations (regenerated from one seed
by the same torch wheel), with the same shape, batch, k and the same latents dead at every
step (10% by default; ``--dead-fraction`` takes several values, a row each), AuxK on them
(coefficient 1/32, k_aux = d_in/2), fp32. A step is what each library's trainer does per
batch (forward, losses, backward, the optimiser step and each one's decoder-norm handling),
on its own fastest documented path:

- saelab: ``Trainer.train_step`` (fused sparse kernels; ``dense``: plain autograd, the
  reference the kernels are tested against), Adam, clipping at 1;
- SAELens 6.54.12: ``SAETrainer``'s step (``bench/peers/saelens_train.py``), Adam;
- sparsify 1.3.3: its hook-and-step body with its fused encoder and its default signum
  optimiser (``bench/peers/sparsify_train.py``);
- dictionary_learning 0.1.0: ``TopKTrainer.update`` (``bench/peers/dictionary_learning_train.py``), Adam.

Each side runs in a process of its own (so each reports its own peak RSS), on the same
thread count; the sides alternate within one invocation, the median step of each round is
kept and the best round reported, so a noisy neighbour slows all sides alike rather than
one. The denominator of ``step_over_encoder_gemm`` is the best of at least 5
``torch.addmm(b_enc, x, W_enc)`` on the same shapes in every round (the best round's):
the roofline's floor on a CPU, measured as the sides are.

``--families`` times other families beside (or instead of) TopK. The peers are TopK-only,
so another family's row has saelab's sparse and dense sides and the GEMM ratio of each
(``family`` on every row). A threshold family (``jumprelu_ste``, ``gated``) has no k: its
thresholds are set so that about ``--k`` latents fire per row (``--state trained``, a
trained SAE) or kept at their initialisation (``--state init``: about half fire, where
its sparse path falls back to dense GEMMs).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from bench.saved_runs import runs_after

SIZES = (8192, 16384)
#: every side, in the order each round runs them: (name, peer venv or None for saelab's own interpreter)
SIDES = {
    "sparse": None,
    "dense": None,
    "saelens": "saelens",
    "sparsify": "sparsify",
    "dictionary_learning": "dictionary_learning",
}
PEER_SIDES = ("saelens", "sparsify", "dictionary_learning")
#: families without a k whose thresholds ``bench.train_side`` sets (``--state``)
THRESHOLD_FAMILIES = ("jumprelu_ste", "gated")
REPO = Path(__file__).resolve().parents[1]
#: what the dead latents' pre-activations look like (``bench.peer_timing.silence_dead``)
DEAD_KINDS = ("marked", "silent")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--d-in", type=int, default=768)
    parser.add_argument("--d-sae", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per round (after 2 warm-up steps)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of all sides")
    parser.add_argument(
        "--dead-fraction",
        type=float,
        nargs="+",
        default=[0.1],
        help="share of latents held dead at every step (AuxK on them); several values give a row each",
    )
    parser.add_argument(
        "--dead-kind",
        nargs="+",
        choices=DEAD_KINDS,
        default=["marked"],
        help="marked: dead latents as initialised, half their pre-activations above 0 (the most AuxK "
        "work); silent: their encoder biases lowered so each fires on ~0.5%% of rows, as latents that "
        "died in training (bench.peer_timing.silence_dead); several values give a row each",
    )
    parser.add_argument(
        "--keep-other-rows",
        action="store_true",
        help="keep the saved rows this run does not measure (bench/results/train.json), replacing the rest",
    )
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--peers",
        default=",".join(PEER_SIDES),
        help=f"comma-separated peers to measure beside saelab (default: {','.join(PEER_SIDES)}; '' for none)",
    )
    parser.add_argument("--no-peers", action="store_true", help="measure no peer (same as --peers '')")
    parser.add_argument("--no-dense", action="store_true", help="skip saelab's dense path")
    parser.add_argument(
        "--families",
        default="topk",
        help="comma-separated SAE families to time (default: topk; k families or "
        f"{', '.join(THRESHOLD_FAMILIES)}); peers run beside topk only",
    )
    parser.add_argument(
        "--state",
        choices=("trained", "init"),
        default="trained",
        help="threshold families: about k latents firing per row (trained) or the initialisation (init)",
    )


def activations(n: int, batch: int, d_in: int, seed: int, device: str) -> list[torch.Tensor]:
    """The shared data: ``n`` batches of standard-normal activations from ``seed``
    (``bench.peer_timing.shared_batches`` makes the same ones in every side's process)."""
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


def families(args: argparse.Namespace) -> list[str]:
    """The families to time: registered trainable ones with a k, or threshold families."""
    from sae.architectures import REGISTRY
    from sae.errors import ConfigError

    names = [f for f in getattr(args, "families", "topk").split(",") if f]
    known = [n for n, f in REGISTRY.items() if f.trainable and (f.has_k or n in THRESHOLD_FAMILIES)]
    unknown = sorted(set(names) - set(known))
    if unknown or not names:
        raise ConfigError(f"--families: unknown {', '.join(unknown) or '(none given)'} (known: {', '.join(known)})")
    return names


def sides(args: argparse.Namespace, family: str = "topk") -> list[str]:
    """The sides this invocation measures, saelab's sparse path first (peers beside TopK only)."""
    from sae.errors import ConfigError

    peers = [] if args.no_peers or family != "topk" else [p for p in args.peers.split(",") if p]
    unknown = sorted(set(peers) - set(PEER_SIDES))
    if unknown:
        raise ConfigError(f"--peers: unknown {', '.join(unknown)} (known: {', '.join(PEER_SIDES)})")
    return ["sparse", *([] if args.no_dense else ["dense"]), *[s for s in PEER_SIDES if s in peers]]


def run_side(side: str, payload: dict) -> dict:
    """One side's median step and peak RSS, measured in a process of its own."""
    from bench.peers import run_peer
    from sae.errors import SaelabError

    if SIDES[side] is not None:
        return run_peer(f"{side}_train.py", payload, peer=SIDES[side])
    result = subprocess.run(
        [sys.executable, "-m", "bench.train_side"],
        input=json.dumps({**payload, "kernel": side}),
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    if result.returncode != 0 or not result.stdout.strip():
        tail = "\n".join(result.stderr.strip().splitlines()[-5:])
        raise SaelabError(f"saelab's {side} training side failed: {tail or 'no output'}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure(
    args: argparse.Namespace,
    d_sae: int,
    k: int | None = None,
    family: str = "topk",
    dead: float | None = None,
    dead_kind: str = "marked",
) -> dict:
    device = getattr(args, "device", "cpu")
    torch.set_num_threads(args.threads)
    k = args.k if k is None else k
    dead = _dead_fractions(args)[0] if dead is None else dead
    payload = {
        "d_in": args.d_in,
        "d_sae": d_sae,
        "k": k,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "dead_fraction": dead,
        "dead_kind": dead_kind,
        "threads": args.threads,
        "seed": args.seed,
        "device": device,
        "lr": 2e-4,
        "family": family,
        "state": getattr(args, "state", "trained"),
    }
    best: dict[str, float] = {}
    rss: dict[str, float] = {}
    info: dict[str, dict] = {}
    gemm = float("inf")
    measured = sides(args, family)
    for _ in range(args.rounds):  # alternate, so drift hits every side (and the floor) alike
        for side in measured:
            got = run_side(side, payload)
            best[side] = min(best.get(side, float("inf")), got["median_step_seconds"])
            rss[side] = max(rss.get(side, 0.0), got["peak_rss_mib"])
            info[side] = got
        gemm = min(gemm, encoder_gemm_seconds(args.d_in, d_sae, args.batch_size, device))
    tps = {side: args.batch_size / seconds for side, seconds in best.items()}
    row = {
        "family": family,
        "dead_fraction": dead,
        "dead_kind": dead_kind,
        "d_in": args.d_in,
        "d_sae": d_sae,
        "k": k,
        "batch_size": args.batch_size,
        "device": device,
        "threads": args.threads,
        "saelab_tokens_per_s": tps["sparse"],
        "saelab_step_s": best["sparse"],
        "saelab_peak_rss_mib": rss["sparse"],
        "peak_rss_from": info["sparse"].get("peak_rss_from", "ru_maxrss"),
        "encoder_gemm_s": gemm,
        "step_over_encoder_gemm": best["sparse"] / gemm,
    }
    if "dense" in tps:
        row.update(
            {
                "saelab_dense_tokens_per_s": tps["dense"],
                "saelab_dense_peak_rss_mib": rss["dense"],
                "sparse_over_dense": tps["sparse"] / tps["dense"],
            }
        )
    if family in THRESHOLD_FAMILIES:  # k is then the firing target of the thresholds' state (bench.train_side)
        row["state"] = payload["state"]
    if family != "topk" and "dense" in best:
        row["dense_step_over_encoder_gemm"] = best["dense"] / gemm
    for peer in PEER_SIDES:
        if peer in tps:
            row.update(
                {
                    f"{peer}_tokens_per_s": tps[peer],
                    f"{peer}_peak_rss_mib": rss[peer],
                    f"{peer}_step_over_encoder_gemm": best[peer] / gemm,
                    f"speedup_vs_{peer}": tps["sparse"] / tps[peer],
                    f"{peer}_version": info[peer]["version"],
                    f"{peer}_optimizer": info[peer]["optimizer"],
                }
            )
    return row


def _dead_fractions(args: argparse.Namespace) -> list[float]:
    """``--dead-fraction`` as a list (one value from a caller that sets a plain float)."""
    value = args.dead_fraction
    return list(value) if isinstance(value, list | tuple) else [value]


def run(args: argparse.Namespace) -> list[dict]:
    return [
        measure(args, d_sae, family=family, dead=dead, dead_kind=kind)
        for kind in args.dead_kind
        for dead in _dead_fractions(args)
        for family in families(args)
        for d_sae in args.d_sae
        if dead > 0 or kind == DEAD_KINDS[0]  # with none dead the kinds are one measurement
    ]


def row_key(row: dict) -> tuple:
    """What a row measures: rows of a later run replace the earlier run's with the same key."""
    return (row.get("family", "topk"), row.get("dead_fraction"), row.get("dead_kind", "marked"), row["d_sae"])


def merge_saved(previous: dict | None, document: dict) -> dict:
    """With ``--keep-other-rows``, the previous file's rows this run did not measure (another
    ``--dead-kind``, dead share, size or family) stay, before this run's; ``runs`` records which
    rows each run made, when and at what load. Without it a run replaces the file."""
    if not previous or not document["args"].get("keep_other_rows") or not isinstance(previous.get("result"), list):
        return document
    new = document["result"]
    fresh = {row_key(r) for r in new}
    kept = [r for r in previous["result"] if row_key(r) not in fresh]
    runs = runs_after(previous, document, [list(row_key(r)) for r in kept], [list(row_key(r)) for r in new])
    return {**document, "result": kept + new, "runs": runs}
