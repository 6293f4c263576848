"""``python -m sae.launch TORCHRUN_ARGS...``: torchrun, reporting a failed job in one line.

``torch.distributed.run`` ends a failed job with a traceback and a multi-line failure
report of its own; the rank that failed has already printed its one-line error. This
runs torchrun's own ``main`` and exits with the failed rank's code instead, quietly.
"""

from __future__ import annotations

import logging
import sys


def main(argv: list[str] | None = None) -> int:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    try:
        torchrun(argv)
    except ChildFailedError as e:
        codes = [f.exitcode for f in e.failures.values()]
        killed = [c for c in codes if c < 0]
        if killed:
            print(
                f"saelab: error: a training process was killed (signal {-killed[0]}); run the same command "
                "again to resume from the last checkpoint",
                file=sys.stderr,
            )
        return next((c for c in codes if c > 0), 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
