"""scaling: how each library's training step grows with d_sae (4k → 64k) and with k (16 → 128).

The training benchmark's sides (``bench.train``: saelab's fused sparse TopK and the three
peers, each in a process of its own on the same data, shapes and thread count), measured
along two axes: d_sae at the base k, and k at the base d_sae. Rows carry ``axis``
(``d_sae`` or ``k``) and the train benchmark's fields: tokens/s, peak RSS and the step
over the bare encoder GEMM per side. ``saelab bench report --html PAGE`` draws them.
The default grid costs many minutes on two cores; ``--steps``/``--rounds`` trade
precision for time (the ratios stay side by side either way).
"""

from __future__ import annotations

import argparse

from bench import train

D_SAE_GRID = (4096, 8192, 16384, 32768, 65536)
K_GRID = (16, 32, 64, 128)


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    train.add_arguments(parser)
    parser.set_defaults(steps=3, rounds=1, no_dense=True)
    parser.add_argument("--d-sae-grid", type=_ints, default=list(D_SAE_GRID), help="d_sae values at the base k")
    parser.add_argument("--k-grid", type=_ints, default=list(K_GRID), help="k values at the base d_sae")
    parser.add_argument("--base-d-sae", type=int, default=16384, help="d_sae of the k axis")


def run(args: argparse.Namespace) -> list[dict]:
    from sae.progress import progress_bar

    points = [("d_sae", d, args.k) for d in args.d_sae_grid] + [("k", args.base_d_sae, k) for k in args.k_grid]
    rows = []
    for axis, d_sae, k in progress_bar(points, desc="scaling", unit="point"):
        rows.append({"axis": axis, **train.measure(args, d_sae, k)})
    return rows
