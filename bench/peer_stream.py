"""The one activation stream of ``saelab bench peers``: a safetensors file both sides read.

Imported by saelab and by the peer scripts in ``bench/peers/`` (run in the peers' own
interpreters), so it needs nothing but torch and safetensors. The file holds, per hook,
``train/<hook>`` rows in a fixed order and ``heldout/<hook>`` rows from another text seed.
Every side reads train rows through ``batches`` (consecutive slices of ``batch_size`` rows,
in file order, the short tail dropped), so both sides see the same rows in the same order
and the same number of tokens, and times its steps with ``TimedBatches`` (the gap between
two consecutive batch fetches is one step of that side's own training loop). Held-out
scores come from ``heldout_stats`` on both sides: one formula for FVU, L0 and dead latents.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator

import torch
from safetensors import safe_open


def read(path: str, split: str, hook: str) -> torch.Tensor:
    """All ``split`` rows (``train`` or ``heldout``) of ``hook`` as float32."""
    with safe_open(str(path), framework="pt", device="cpu") as f:
        name = f"{split}/{hook}"
        if name not in f.keys():  # noqa: SIM118 - safe_open is not a dict
            raise KeyError(f"{path} has no {name!r} (it has {', '.join(sorted(f.keys()))})")
        return f.get_tensor(name).float()


def steps_for(n_rows: int, batch_size: int) -> int:
    """Full batches in ``n_rows`` rows: every side trains exactly this many steps."""
    return n_rows // batch_size


def batches(rows: torch.Tensor | dict[str, torch.Tensor], batch_size: int, passes: int = 1) -> Iterator:
    """Consecutive ``batch_size`` slices of ``rows`` in order (a dict: the same slice of each
    tensor), dropping a short tail; ``passes`` times over the same rows in the same order
    (the longer budget of threshold families, ``peer_parity.PASSES``)."""
    first = next(iter(rows.values())) if isinstance(rows, dict) else rows
    for _ in range(passes):
        for i in range(steps_for(first.shape[0], batch_size)):
            sl = slice(i * batch_size, (i + 1) * batch_size)
            yield {k: v[sl] for k, v in rows.items()} if isinstance(rows, dict) else rows[sl]


class TimedBatches:
    """Wraps a batch iterator; ``stamps`` are the times each batch was fetched.

    The gap between two fetches is one whole step of the consuming training loop (forward,
    backward, optimiser, the library's own bookkeeping). ``seconds_per_step`` is the median
    gap after ``warmup`` steps, so one-off costs (first-batch initialisation, allocator
    warm-up, a periodic log line) do not count.
    """

    def __init__(self, inner, warmup: int = 2):
        self.inner = iter(inner)
        self.warmup = warmup
        self.stamps: list[float] = []
        self.fetched = 0

    def __iter__(self):
        return self

    def __next__(self):
        item = next(self.inner)
        self.stamps.append(time.perf_counter())
        self.fetched += 1
        return item

    def seconds_per_step(self) -> float:
        gaps = [b - a for a, b in zip(self.stamps, self.stamps[1:], strict=False)][self.warmup :]
        if not gaps:
            raise ValueError("too few steps to time (need more than the warm-up)")
        return statistics.median(gaps)


@torch.no_grad()
def heldout_stats(x: torch.Tensor, x_hat: torch.Tensor, row_l0: torch.Tensor, fires: torch.Tensor) -> dict:
    """The lab's held-out scores from a side's reconstructions and firing counts.

    - FVU = Σ‖x − x̂‖² / Σ‖x − x̄‖², x̄ the mean of the held-out rows (the target rows, for
      a transcoder);
    - L0 = mean over rows of the number of latents with a non-zero code;
    - dead fraction = share of latents that fire on none of the held-out rows.
    """
    x, x_hat = x.double(), x_hat.double()
    total = (x - x.mean(0)).pow(2).sum()
    return {
        "fvu": float((x - x_hat).pow(2).sum() / total),
        "l0": float(row_l0.double().mean()),
        "dead_fraction": float((fires == 0).double().mean()),
    }


@torch.no_grad()
def code_counts(codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(row_l0 [B], fires [d_sae])`` of dense codes: non-zeros per row and rows per latent."""
    active = codes != 0
    return active.sum(-1), active.sum(0)


@torch.no_grad()
def reconstruct_all(fn, x: torch.Tensor, chunk: int = 4096) -> dict[str, torch.Tensor]:
    """Run ``fn(rows) -> (x_hat, dense codes)`` over ``x`` in chunks; returns ``x_hat``,
    ``row_l0`` and ``fires`` (what ``heldout_stats`` reads, and what a peer script writes)."""
    parts, row_l0, fires = [], [], None
    for i in range(0, x.shape[0], chunk):
        x_hat, codes = fn(x[i : i + chunk])
        rows, per_latent = code_counts(codes)
        parts.append(x_hat.float())
        row_l0.append(rows)
        fires = per_latent if fires is None else fires + per_latent
    return {"x_hat": torch.cat(parts), "row_l0": torch.cat(row_l0), "fires": fires}


def write_outputs(path: str, outputs: dict[str, torch.Tensor]) -> None:
    """A peer's held-out outputs, for saelab to score (written whole, then renamed)."""
    import os

    from safetensors.torch import save_file

    tmp = f"{path}.tmp"
    save_file({k: v.contiguous() for k, v in outputs.items()}, tmp)
    os.replace(tmp, path)


def read_outputs(path: str) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt", device="cpu") as f:
        return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open is not a dict


def begin() -> tuple[dict, torch.Tensor, int]:
    """The start of every peer script: the JSON payload from stdin, one seed and thread
    count, the train rows of the input hook and the number of steps they make (all
    ``passes`` over them; feed ``batches(x, batch_size, passes(payload))``)."""
    import json
    import sys

    payload = json.loads(sys.stdin.read())
    torch.set_num_threads(payload["threads"])
    torch.manual_seed(payload["seed"])
    x = read(payload["stream"], "train", payload["hook_in"])[: payload["n_rows"]]
    return payload, x, passes(payload) * steps_for(x.shape[0], payload["batch_size"])


def passes(payload: dict) -> int:
    """Passes over the train rows (1 unless the payload says otherwise)."""
    return int(payload.get("passes", 1))


def encode_decode(module):
    """``run`` for ``finish`` from a module with ``encode`` and ``decode`` (its inference path)."""

    def run(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        codes = module.encode(rows)
        return module.decode(codes), codes

    return run


def finish(payload: dict, run, data: TimedBatches, train_seconds: float, peer_version: str, config: dict) -> None:
    """The end of every peer script: held-out outputs of ``run`` written for saelab to score
    (and the validation rows' outputs when the payload names a ``validation_stream``), then
    the one JSON line saelab reads (version, steps, timing, the peer's dumped config)."""
    import json

    held = read(payload["stream"], "heldout", payload["hook_in"])
    write_outputs(payload["out"], reconstruct_all(run, held))
    if payload.get("validation_stream"):  # the lr search scores these rows, never the held-out ones
        rows = read(payload["validation_stream"], "validation", payload["hook_in"])
        write_outputs(payload["validation_out"], reconstruct_all(run, rows))
    line = {
        "peer_version": peer_version,
        "steps": data.fetched,
        "seconds_per_step": data.seconds_per_step(),
        "train_seconds": train_seconds,
        "config": plain(config),
    }
    print(json.dumps(line))


def plain(value):
    """A config value as JSON (tensors, dtypes, paths and other objects as strings)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, type):
        return value.__name__
    return str(value)
