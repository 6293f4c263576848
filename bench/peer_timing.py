"""What every peer side of ``saelab bench train`` shares: the data, the timing and the report.

Imported by the scripts in ``bench/peers/*_train.py`` inside each peer's own interpreter
(so it needs torch only). The data are ``bench.train.activations``' batches, regenerated
from the same seed by the same torch wheel; a step is timed as the saelab side's is (two
untimed warm-up steps, then the median of ``steps``); peak RSS is the process's own high-water
mark (VmHWM), so each side's memory is measured in a process of its own.
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time

import torch


def read_payload() -> dict:
    p = json.loads(sys.stdin.read())
    torch.set_num_threads(p["threads"])
    return p


def shared_batches(p: dict) -> list[torch.Tensor]:
    """The four batches every side steps through (``bench.train.activations``)."""
    gen = torch.Generator().manual_seed(p["seed"])
    return [torch.randn(p["batch_size"], p["d_in"], generator=gen).to(p["device"]) for _ in range(4)]


def dead_mask(p: dict) -> torch.Tensor:
    """The same first ``dead_fraction`` of latents dead at every step, on every side."""
    dead = torch.zeros(p["d_sae"], dtype=torch.bool, device=p["device"])
    dead[: int(p["dead_fraction"] * p["d_sae"])] = True
    return dead


#: a silent dead latent's encoder bias, in standard deviations of its pre-activation on the
#: standard-normal bench data (‖w_j‖): at 2.6 it is above 0 on ~0.5% of the rows
SILENT_BIAS_SD = 2.6


@torch.no_grad()
def silence_dead(p: dict, bias: torch.Tensor, w_rows: torch.Tensor) -> None:
    """``dead_kind: silent``: the dead latents' encoder biases at −2.6‖w_j‖ (``w_rows``: the
    encoder's ``[d_sae, d_in]`` rows), so each fires on ~0.5% of the rows, as latents that
    died in training do (AuxK's top-k_aux of the organism's dead latents: 0.03-0.8% above 0).
    ``marked`` (the default) leaves them as initialised: half of their pre-activations above
    0, like live latents, the most work AuxK can be given."""
    if p.get("dead_kind", "marked") == "silent":
        dead = dead_mask(p)
        bias[dead] = -SILENT_BIAS_SD * w_rows[dead].norm(dim=1)


def median_step_seconds(step, batches: list[torch.Tensor], steps: int, device: str) -> float:
    """Median seconds of ``steps`` steps after two warm-up steps (``step(i, x)``, ``i`` from 0)."""

    def timed(i: int, x: torch.Tensor) -> float:
        start = time.perf_counter()
        step(i, x)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for i, x in enumerate(batches[:2]):
        timed(i, x)
    return statistics.median(timed(2 + i, batches[i % len(batches)]) for i in range(steps))


def peak_rss() -> tuple[float, str]:
    """This process's peak resident set in MiB, and where it was read.

    ``VmHWM`` (``/proc/self/status``) is the high-water mark of the process's own address
    space. ``ru_maxrss`` is not: Linux carries it from the parent through fork and exec, so
    every side the bench starts would read at least the bench process's own peak (measured:
    a child of a process that had touched 1.2 GiB read 1,244 MiB there, 11 MiB in VmHWM).
    ``ru_maxrss`` stays the fallback where there is no ``/proc`` (it counts bytes on macOS).
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024, "VmHWM"
    except OSError:
        pass
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / (2**20 if sys.platform == "darwin" else 1024), "ru_maxrss"


def report(seconds: float, steps: int, **extra) -> None:
    """The one JSON line ``bench.peers.run_peer`` reads."""
    mib, source = peak_rss()
    print(
        json.dumps(
            {"median_step_seconds": seconds, "steps": steps, "peak_rss_mib": mib, "peak_rss_from": source, **extra}
        )
    )
