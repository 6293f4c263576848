"""roofline: saelab's sparse TopK training step over the bare encoder GEMM at the same size.

Sparse-aware training still has to compute every pre-activation once (the encoder GEMM);
everything else (top-k, the sparse backward, AuxK, Adam) is overhead on top of it, so
``step_over_encoder_gemm`` near 1 means the rest costs little. The step and the GEMM are
those of the ``train`` benchmark (same sizes, data and pinned denominator).
"""

from __future__ import annotations

import argparse

from bench import train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    train.add_arguments(parser)


def run(args: argparse.Namespace) -> list[dict]:
    args.no_peers, args.no_dense = True, True
    keep = (
        "d_in",
        "d_sae",
        "k",
        "batch_size",
        "device",
        "threads",
        "saelab_step_s",
        "encoder_gemm_s",
        "step_over_encoder_gemm",
    )
    return [{k: row[k] for k in keep} for row in train.run(args)]
