"""``python -m sae.train CONFIG ...``: one rank of a training job (what ``saelab train --nproc N`` runs).

``torchrun --nproc_per_node N -m sae.train CONFIG [--out DIR] [--set k=v]`` runs the same
job directly, and with ``--nnodes``/``--node_rank``/``--rdzv_endpoint`` across machines.
Without torchrun it is a single-process ``saelab train``.
"""

from __future__ import annotations

from sae.cli_train import add_arguments, run
from sae.distributed import rank_main

if __name__ == "__main__":
    raise SystemExit(rank_main("python -m sae.train", add_arguments, run))
