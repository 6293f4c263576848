"""Data-parallel jobs on ``torch.distributed``: one process per rank, launched by ``torchrun``.

``from_environment()`` joins the process group that ``torchrun`` (``torch.distributed.run``)
describes in the environment: gloo on CPU, NCCL on GPU, and a timeout on every
collective, so a rank that died makes the others fail with one clear line instead of
hanging. ``launch(module, argv, nproc)`` is what ``saelab train --nproc N`` and
``saelab cache --nproc N`` run: ``torchrun --standalone --nproc_per_node N -m MODULE ...``
(through ``sae.launch``, which reports a failed job in one line), with no restarts: a
failed job is rerun by the user and resumes from its checkpoint.
Multi-node jobs use ``torchrun`` directly with ``--nnodes/--node_rank/--rdzv_endpoint``.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys

import torch
import torch.distributed as dist

from sae.collective import Collective
from sae.errors import SaelabError

#: seconds a collective may wait for the other ranks before the job fails
DEFAULT_TIMEOUT_S = 300
_OPS = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}


class TorchCollective(Collective):
    """``Collective`` over an initialised ``torch.distributed`` process group."""

    def __init__(self, device: str = "cpu"):
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.device = device

    def _run(self, what: str, fn):
        try:
            return fn()
        except RuntimeError as e:  # timeouts and broken peers (DistError is a RuntimeError)
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
            raise SaelabError(
                f"rank {self.rank}: {what} across {self.world_size} processes failed ({first}); "
                "another process died or stopped answering. Run the same command again to "
                "resume from the last checkpoint"
            ) from None

    def _on_device(self, tensor: torch.Tensor) -> tuple[torch.Tensor, torch.device]:
        return tensor.detach().to(self.device).contiguous(), tensor.device

    def all_reduce(self, tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
        work, home = self._on_device(tensor)
        work = work.clone()
        self._run("all_reduce", lambda: dist.all_reduce(work, op=_OPS[op]))
        return work.to(home)

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        work, home = self._on_device(tensor)
        parts = [torch.empty_like(work) for _ in range(self.world_size)]
        self._run("all_gather", lambda: dist.all_gather(parts, work))
        return torch.cat(parts).to(home)

    def broadcast(self, tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
        work, home = self._on_device(tensor)
        work = work.clone()
        self._run("broadcast", lambda: dist.broadcast(work, src=src))
        return work.to(home)

    def barrier(self) -> None:
        self._run("barrier", lambda: dist.barrier())


def in_torchrun() -> bool:
    """Whether this process was started by torchrun as one rank of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def from_environment(device: str = "cpu", timeout_s: float = DEFAULT_TIMEOUT_S) -> Collective:
    """The job's ``Collective``: a joined process group under torchrun, else a single process."""
    from sae.collective import SINGLE

    if not in_torchrun():
        return SINGLE
    if not dist.is_initialized():
        on_gpu = str(device).startswith("cuda")
        if on_gpu:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
        try:
            dist.init_process_group("nccl" if on_gpu else "gloo", timeout=datetime.timedelta(seconds=timeout_s))
        except (RuntimeError, ValueError) as e:
            raise SaelabError(f"cannot join the process group: {str(e).splitlines()[0][:160]}") from None
    if str(device).startswith("cuda"):
        device = f"cuda:{torch.cuda.current_device()}"
    return TorchCollective(device)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def launch(module: str, argv: list[str], nproc: int) -> int:
    """Run ``python -m module argv`` as ``nproc`` ranks on this machine; the job's exit code."""
    if nproc < 1:
        raise SaelabError(f"--nproc must be at least 1 (got {nproc})")
    command = [
        sys.executable,
        "-m",
        "sae.launch",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "--max_restarts=0",
        "-m",
        module,
        *argv,
    ]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return subprocess.call(command, env=env)


def forward_argv(args, positional: list[str], options: list[str]) -> list[str]:
    """The command line that gives each rank the same ``args`` (``--set`` repeated as given)."""
    argv = [str(getattr(args, name)) for name in positional]
    for name in options:
        value = getattr(args, name)
        flag = "--" + name.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif isinstance(value, list):
            for item in value:
                argv += [flag, str(item)]
        elif value not in (None, False):
            argv += [flag, str(value)]
    return argv


def rank_main(prog: str, add_arguments, run, argv: list[str] | None = None) -> int:
    """A rank's ``main``: parse like the ``saelab`` command, run, and report a ``SaelabError`` in one line."""
    import argparse

    parser = argparse.ArgumentParser(prog=prog)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return int(run(args) or 0)
    except SaelabError as e:
        print(f"saelab: error: {e}", file=sys.stderr)
        return e.exit_code
    finally:
        shutdown()
