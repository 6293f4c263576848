"""The SAE trainer: one shared stream of batches, any number of SAEs, exact resume.

It consumes an iterator of batches: a tensor ``x``, a pair ``(x, g)``, or a mapping from
keys to ``[batch, d]`` tensors (several hooks of one stream). Every SAE reads its input
(and, for gradient SAEs, its gradient) by key; a transcoder also reads a target by key
(rows aligned with its input's) and is trained towards it, each side with its own scale,
through ``SparseAutoencoder.training_pass`` (the trainer knows no more about it), so a sweep over k, or several
architectures side by side, costs one pass over the data. It knows nothing about
language models: tests drive it with random tensors.

Per SAE: Adam with linear warm-up and a linear decay to zero over the last
``decay_fraction`` of training, lr = base_lr/√(d_sae/2¹⁴) unless set; gradient clipping;
unit-norm decoder rows with the parallel gradient removed (except ReLU); a family's
sparsity coefficient warmed up as its registry entry says (``Family.coefficient``); W_enc = W_decᵀ
and b_dec from the first batch; inputs scaled by a constant (set by the caller, e.g. so
their mean norm is √d_in) that is folded back into the saved weights; dead-latent
tracking in tokens since each latent last fired, which AuxK reads, and a firing-density
histogram in the metrics.

Checkpoints hold everything the next step depends on (weights, buffers, optimiser
moments, the RNG, the data position in rows, the dead-latent counters), written
atomically; restarting the same run resumes from the last one and reaches the same
final weights as an uninterrupted run.

Data-parallel training plugs in through a ``Collective`` (``sae.collective``; one process
by default): each rank steps on its part of every global batch; the data position and the
dead-latent statistics are global (rows and firings summed over ranks), gradients are
averaged over ranks before clipping (one flat all-reduce per SAE), b_dec starts from the
whole first global batch, and only rank 0 writes files. The SAEs get the same
``Collective``, so batch-level rules (mutual and feature choice) and AuxK's normalisation
see the global batch: with equal parts per rank, N processes compute what one process
computes on the whole batch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field

from sae.architectures import SparseAutoencoder
from sae.checkpoint import load_checkpoint, save_checkpoint
from sae.collective import SINGLE, Collective
from sae.config import FrozenConfig
from sae.errors import SaelabError
from sae.progress import progress_bar
from sae.run_log import RunLog

Batch = dict[str, torch.Tensor]
#: log10-density bin edges of the firing histogram (latents that never fired get their own bin)
DENSITY_EDGES = (-6, -5, -4, -3, -2, -1)
#: trainer settings a run may change when it resumes (they do not change what is computed)
RESUMABLE = ("checkpoint_every", "log_every", "wandb_project", "wandb_mode", "device", "collective_timeout_s")


def adam(params, **kwargs) -> torch.optim.Adam:
    """Adam with the fused single-pass update where this torch and device have it.

    The default CPU Adam runs a dozen elementwise passes per tensor; the fused kernel reads
    each parameter, gradient and moment once: about 4x faster on CPU at d_sae = 8192, which
    is a third of an encoder GEMM per step. Same update rule; results differ from the unfused
    path only by float rounding, and are deterministic either way (resume stays exact).
    """
    params = list(params)
    try:
        return torch.optim.Adam(params, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):  # an older torch, or a device without the fused kernel
        return torch.optim.Adam(params, **kwargs)


class TrainerConfig(FrozenConfig):
    """Optimisation and bookkeeping, shared by every SAE of a run."""

    batch_size: int = Field(4096, gt=0, description="Rows per step.")
    lr: float | None = Field(None, gt=0, description="Learning rate; None: base_lr / sqrt(d_sae / 2**14).")
    base_lr: float = Field(2e-4, gt=0, description="Base of the default learning-rate law.")
    adam_betas: tuple[float, float] = Field((0.9, 0.999), description="Adam betas.")
    adam_eps: float = Field(6.25e-10, gt=0, description="Adam epsilon.")
    warmup_steps: int = Field(50, ge=0, description="Linear learning-rate warm-up.")
    decay_fraction: float = Field(0.2, ge=0, le=1, description="Final fraction of steps decaying the lr to 0.")
    grad_clip: float = Field(1.0, gt=0, description="Gradient-norm clip per SAE.")
    dead_after_tokens: int = Field(200_000, gt=0, description="A latent silent this many tokens is dead (AuxK).")
    normalize_activations: bool = Field(
        True, description="Scale inputs by sqrt(d_in) / E||x|| (SAELens' convention); folded at save."
    )
    checkpoint_every: int = Field(200, ge=0, description="Steps between checkpoints (0: only at the end).")
    log_every: int = Field(25, gt=0, description="Steps between metric lines.")
    seed: int = Field(0, description="Seeds initialisation and any sampling (vSAE).")
    device: str = Field("cpu", description="Where the SAEs train ('cpu', 'cuda', 'cuda:1'); batches are moved there.")
    collective_timeout_s: float = Field(
        300.0,
        gt=0,
        description="Data-parallel jobs: seconds a collective waits for "
        "the other processes before the job fails (a dead or hung rank).",
    )
    wandb_project: str | None = Field("saelab", description="wandb project (offline unless configured); None: off.")
    wandb_mode: Literal["auto", "online", "offline"] = Field(
        "auto",
        description="wandb mode. auto: online when you are logged in (WANDB_API_KEY or a stored 'wandb login' "
        "in ~/.netrc), offline otherwise; WANDB_MODE in the environment overrides this.",
    )


@dataclass
class Member:
    """One SAE of a run and where it reads its data."""

    name: str
    sae: SparseAutoencoder
    input_key: str = "x"
    grad_key: str | None = None
    scale: float = 1.0  # inputs are multiplied by this while training
    lr: float | None = None  # overrides the run's learning rate for this SAE
    target_key: str | None = None  # a transcoder's target (None: the SAE reconstructs its input)
    target_scale: float = 1.0  # targets are multiplied by this while training
    optimizer: torch.optim.Optimizer | None = None
    since_fired: torch.Tensor | None = None  # tokens since each latent last fired (global)
    window_fires: torch.Tensor | None = None  # firings per latent since the last metric line (local)
    window_rows: int = 0
    window_seconds: float = 0.0  # time spent in this SAE's steps since the last metric line
    window_steps: int = 0
    last: dict = field(default_factory=dict)

    @staticmethod
    def reading(
        name: str,
        sae: SparseAutoencoder,
        key: str = "x",
        scale: float = 1.0,
        lr: float | None = None,
        target: str | None = None,
        target_scale: float = 1.0,
    ) -> Member:
        """A member reading ``key`` (and ``<key>.grad`` when the family needs gradients); a
        transcoder also reads ``target``, and its gradient is the target's (∂L/∂y: what the
        decoder writes is scored against it, e.g. a gradient SAE's W_dec g)."""
        grad_of = target or key
        grad = f"{grad_of}.grad" if sae.needs_gradients else None
        return Member(name, sae, key, grad, scale, lr, target, target_scale if target else 1.0)

    def base_lr(self, cfg: TrainerConfig) -> float:
        return self.lr if self.lr is not None else default_lr(cfg, self.sae.cfg.d_sae)


def default_lr(cfg: TrainerConfig, d_sae: int) -> float:
    return cfg.lr if cfg.lr is not None else cfg.base_lr / math.sqrt(d_sae / 2**14)


def lr_factor(step: int, total: int, cfg: TrainerConfig) -> float:
    warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
    decay_start = total * (1 - cfg.decay_fraction)
    decay = 1.0 if step < decay_start else max(0.0, (total - step) / max(1.0, total - decay_start))
    return warm * decay


def all_finite(x: torch.Tensor) -> bool:
    """Whether every entry is finite. A finite sum proves it in one vectorised pass
    (``isfinite(x).all()`` writes and reads a bool tensor: ~20x slower on CPU); a
    non-finite sum may also be an overflow of finite entries, so only then is each checked."""
    return bool(torch.isfinite(x.sum())) or bool(torch.isfinite(x).all())


def as_batch(item) -> Batch:
    """``x`` → {"x"}; ``(x, g)`` → {"x", "x.grad"}; mappings pass; store batches (acts, grads) flatten."""
    if isinstance(item, torch.Tensor):
        return {"x": item}
    if isinstance(item, Mapping):
        return dict(item)
    if isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(t, torch.Tensor) for t in item):
        return {"x": item[0], "x.grad": item[1]}
    if hasattr(item, "acts"):
        out = dict(item.acts)
        out.update({f"{h}.grad": g for h, g in (getattr(item, "grads", None) or {}).items()})
        return out
    raise SaelabError(f"the trainer cannot read a batch of type {type(item).__name__}")


def density_histogram(counts: torch.Tensor, rows: int) -> list[int]:
    """Latents per firing-density bin: [never fired, (0, 1e-6), [1e-6, 1e-5), ..., [1e-2, 0.1), [0.1, 1]]."""
    density = counts.double() / max(rows, 1)
    never = int((counts == 0).sum())
    logd = density[counts > 0].log10()
    edges = torch.tensor(DENSITY_EDGES, dtype=torch.float64, device=logd.device)  # bucketize: same device
    bins = torch.bucketize(logd, edges, right=True)
    return [never, *torch.bincount(bins, minlength=len(DENSITY_EDGES) + 1).tolist()]


class Trainer:
    def __init__(
        self,
        members: list[Member],
        cfg: TrainerConfig,
        run_dir: str | Path,
        dist: Collective | None = None,
        progress: bool = True,
    ):
        if not members:
            raise SaelabError("a run needs at least one SAE")
        if len({m.name for m in members}) != len(members):
            raise SaelabError("SAE names in a run must be unique")
        self.members, self.cfg, self.run_dir = members, cfg, Path(run_dir)
        self.dist = dist or SINGLE
        self.progress = progress and self.dist.rank == 0
        self.step = 0
        self.rows = 0  # global data position: rows consumed by all ranks together
        self.log = RunLog(
            self.run_dir,
            enabled=self.writer,
            wandb_project=cfg.wandb_project,
            config=self._config,
            wandb_mode=cfg.wandb_mode,
        )
        for m in members:
            m.sae.to(cfg.device).train()
            m.sae.collective = self.dist
            m.optimizer = adam(m.sae.parameters(), lr=m.base_lr(cfg), betas=cfg.adam_betas, eps=cfg.adam_eps)
            m.since_fired = torch.zeros(m.sae.cfg.d_sae, dtype=torch.long, device=cfg.device)
            m.window_fires = torch.zeros(m.sae.cfg.d_sae, dtype=torch.long, device=cfg.device)

    @property
    def writer(self) -> bool:
        return self.dist.rank == 0

    @property
    def local_rows(self) -> int:
        """This rank's position in its own stream (equal parts on every rank)."""
        return self.rows // self.dist.world_size

    def _config(self) -> dict:
        """The run's settings, as logged with the metrics (wandb's run config)."""
        return {
            "trainer": self.cfg.model_dump(mode="json"),
            "saes": {m.name: m.sae.cfg.model_dump(mode="json") for m in self.members},
        }

    # -- state ------------------------------------------------------------------------

    def identity(self) -> dict:
        """What a stored state must match to resume this trainer: its settings (bar those a
        resumed run may change, ``RESUMABLE``) and each SAE's config, inputs and learning rate."""
        return {
            "trainer": self.cfg.model_dump(mode="json", exclude=set(RESUMABLE)),
            "saes": {
                m.name: {
                    "config": m.sae.cfg.model_dump(mode="json"),
                    "input_key": m.input_key,
                    "grad_key": m.grad_key,
                    "lr": m.lr,
                    **({"target_key": m.target_key} if m.target_key else {}),
                }
                for m in self.members
            },
        }

    def state_dict(self) -> dict:
        """Everything the next step depends on: ``tensors`` (name → tensor: weights, Adam
        moments, dead-latent counters, every rank's RNG state and firing window) and JSON
        values (step, data position, identity, scales, optimiser settings).

        Every rank must call it (it gathers the ranks' RNG states and firing windows); each
        gets the whole state. The tensors are the live ones: store them before stepping on.
        """
        dist = self.dist
        rng = dist.all_gather(torch.get_rng_state()[None])
        windows = {m.name: dist.all_gather(m.window_fires[None]) for m in self.members}  # per-rank counts
        cuda_rng = None
        if str(self.cfg.device).startswith("cuda"):
            cuda_rng = dist.all_gather(torch.cuda.get_rng_state(self.cfg.device)[None])
        tensors: dict[str, torch.Tensor] = {}
        for r in range(dist.world_size):
            tensors[f"rng/torch/{r}"] = rng[r]
            if cuda_rng is not None:
                tensors[f"rng/cuda/{r}"] = cuda_rng[r]
        groups = {}
        for m in self.members:
            for k, v in m.sae.state_dict().items():
                tensors[f"{m.name}/sae/{k}"] = v
            opt = m.optimizer.state_dict()
            for idx, state in opt["state"].items():
                for k, v in state.items():
                    tensors[f"{m.name}/opt/{idx}/{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
            groups[m.name] = opt["param_groups"]
            tensors[f"{m.name}/since_fired"] = m.since_fired
            for r in range(dist.world_size):
                tensors[f"{m.name}/window_fires/{r}"] = windows[m.name][r]
        return {
            "tensors": tensors,
            "step": self.step,
            "rows": self.rows,
            "world_size": dist.world_size,
            "identity": self.identity(),
            "scales": {m.name: m.scale for m in self.members},
            "target_scales": {m.name: m.target_scale for m in self.members if m.target_key},
            "window_rows": {m.name: m.window_rows for m in self.members},
            "param_groups": groups,
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state`` (as ``state_dict`` gave it); a state of another run, or of
        another number of processes, is refused."""
        if state.get("world_size", 1) != self.dist.world_size:
            raise SaelabError(
                f"{self.run_dir} was checkpointed with {state.get('world_size', 1)} processes; "
                f"resume it with the same number (not {self.dist.world_size})"
            )
        if state.get("identity") != self.identity():
            raise SaelabError(
                f"{self.run_dir} holds a checkpoint of a different run (other SAEs or settings); "
                "use another --out or remove it"
            )
        tensors, device = state["tensors"], self.cfg.device
        for m in self.members:
            prefix = f"{m.name}/sae/"
            m.sae.load_state_dict({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})
            opt_state: dict[int, dict] = {}
            prefix = f"{m.name}/opt/"
            for k, v in tensors.items():
                if k.startswith(prefix):
                    idx, name = k[len(prefix) :].split("/")
                    opt_state.setdefault(int(idx), {})[name] = v
            m.optimizer.load_state_dict({"state": opt_state, "param_groups": state["param_groups"][m.name]})
            m.since_fired = tensors[f"{m.name}/since_fired"].to(device)
            m.window_fires = tensors[f"{m.name}/window_fires/{self.dist.rank}"].to(device)
            m.window_rows = state["window_rows"][m.name]
            m.scale = state["scales"][m.name]
            if m.target_key:
                m.target_scale = state["target_scales"][m.name]
        rank = self.dist.rank
        torch.set_rng_state(tensors[f"rng/torch/{rank}"])
        if f"rng/cuda/{rank}" in tensors and str(device).startswith("cuda"):
            torch.cuda.set_rng_state(tensors[f"rng/cuda/{rank}"], device)
        self.step, self.rows = state["step"], state["rows"]

    def _save_checkpoint(self) -> None:
        state = self.state_dict()  # on every rank: it gathers their RNG states
        if self.writer:
            save_checkpoint(self.run_dir, state)

    def _resume(self) -> bool:
        """Continue from the run directory's checkpoint; False when there is none."""
        state = load_checkpoint(self.run_dir)
        if state is None:
            return False
        self.load_state_dict(state)
        self.log.truncate(self.step)
        return True

    # -- data -------------------------------------------------------------------------

    def _inputs(self, m: Member, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """``(x, g, y)``: the scaled input, its gradient (if read) and a transcoder's scaled target (else None)."""
        try:
            device = self.cfg.device
            x = batch[m.input_key].to(device, torch.float32, non_blocking=True) * m.scale
            y = None
            if m.target_key is not None:
                y = batch[m.target_key].to(device, torch.float32, non_blocking=True) * m.target_scale
            g = None
            if m.grad_key is not None:
                # dL/d(v·s) = dL/dv / s, v the input, or a transcoder's target
                s = m.target_scale if m.target_key is not None else m.scale
                g = batch[m.grad_key].to(device, torch.float32, non_blocking=True) / s
        except KeyError as e:
            raise SaelabError(
                f"SAE {m.name!r} reads {e.args[0]!r}, which the batches lack (they have {', '.join(sorted(batch))})"
            ) from None
        if x.shape[-1] != m.sae.cfg.d_in:
            raise SaelabError(
                f"SAE {m.name!r} has d_in {m.sae.cfg.d_in} but its input {m.input_key!r} has width {x.shape[-1]}"
            )
        if (y is None) == m.sae.cfg.transcoder:
            raise SaelabError(f"SAE {m.name!r}: a transcoder needs a target key and an SAE none")
        if y is not None and (y.shape[-1] != m.sae.cfg.d_out or y.shape[0] != x.shape[0]):
            raise SaelabError(
                f"SAE {m.name!r} has d_out {m.sae.cfg.d_out} but its target {m.target_key!r} has "
                f"shape {tuple(y.shape)} against {x.shape[0]} input rows"
            )
        return x, g, y

    @torch.no_grad()
    def initialise(self, batch: Batch) -> None:
        """Data-dependent initialisation (b_dec from the first global batch); ``fit`` does it on a fresh run."""
        for m in self.members:
            x, _, y = self._inputs(m, batch)
            m.sae.init_b_dec(self.dist.all_gather(x if y is None else y))

    # -- one step ---------------------------------------------------------------------

    def _train_step(self, m: Member, batch: Batch, total_steps: int, global_rows: torch.Tensor) -> None:
        started = time.perf_counter()
        sae, cfg = m.sae, self.cfg
        x, g, y = self._inputs(m, batch)
        if not all_finite(x) or (y is not None and not all_finite(y)):
            raise SaelabError(
                f"non-finite activations in the batch at step {self.step} (SAE {m.name!r}); "
                f"the last good checkpoint in {self.run_dir} is kept"
            )
        for group in m.optimizer.param_groups:
            group["lr"] = m.base_lr(cfg) * lr_factor(self.step, total_steps, cfg)
        coefficient = sae.family.coefficient
        if coefficient is not None:
            sae.coefficient_scale = coefficient.scale(sae.cfg, self.step, total_steps)
        dead = m.since_fired >= cfg.dead_after_tokens
        out = sae.training_pass(x, g=g, dead=dead, target=y)
        loss = sum(out.losses.values())
        if not torch.isfinite(loss):
            raise SaelabError(
                f"training stopped: the loss of SAE {m.name!r} is {float(loss)} at step {self.step}; "
                f"the last good checkpoint in {self.run_dir} is kept"
            )
        m.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.dist.distributed:
            self._average_gradients(sae)
        sae.remove_parallel_gradient()
        torch.nn.utils.clip_grad_norm_(sae.parameters(), cfg.grad_clip)
        m.optimizer.step()
        sae.normalize_decoder()
        counts = out.fire_counts()
        m.window_fires += counts
        m.window_rows += x.shape[0]
        fired = self.dist.all_reduce(counts) > 0
        m.since_fired += global_rows
        m.since_fired[fired] = 0
        m.window_seconds += time.perf_counter() - started
        m.window_steps += 1
        if self._logging_step(total_steps):
            self._record(m, x if y is None else y, out, dead)

    def _average_gradients(self, sae: SparseAutoencoder) -> None:
        """Mean of every gradient over ranks, in one flat all-reduce."""
        params = [p for p in sae.parameters() if p.grad is not None]
        flat = self.dist.all_reduce(torch.cat([p.grad.reshape(-1) for p in params])) / self.dist.world_size
        for p, part in zip(params, flat.split([p.numel() for p in params]), strict=True):
            p.grad = part.view_as(p.grad)

    def train_step(self, batch: Batch, total_steps: int) -> None:
        """One optimisation step of every SAE on ``batch`` (this rank's rows), advancing the data position.

        ``total_steps`` fixes the learning-rate schedule. ``fit`` calls this; benchmarks
        and custom loops may too (after ``initialise``).
        """
        local = next(iter(batch.values())).shape[0]
        global_rows = self.dist.all_reduce(torch.tensor(local, device=self.cfg.device))
        for m in self.members:
            self._train_step(m, batch, total_steps, global_rows)
        self.rows += int(global_rows)
        self.step += 1

    def _logging_step(self, total_steps: int) -> bool:
        return self.step % self.cfg.log_every == 0 or self.step == total_steps - 1

    @torch.no_grad()
    def _record(self, m: Member, x: torch.Tensor, out, dead: torch.Tensor) -> None:
        resid = (x - out.x_hat).pow(2).sum()
        total = (x - x.mean(0)).pow(2).sum().clamp_min(1e-12)
        window = self.dist.all_reduce(m.window_fires.clone())
        rows = int(self.dist.all_reduce(torch.tensor(m.window_rows, device=self.cfg.device)))
        dying = (m.since_fired >= self.cfg.dead_after_tokens // 2) & ~dead
        m.last = {
            **{f"loss/{k}": float(v) for k, v in out.losses.items()},
            "fvu": float(resid / total),
            "l0": out.l0(),
            "dead_fraction": float(dead.float().mean()),
            "dying_fraction": float(dying.float().mean()),
            "mean_tokens_since_fired": float(m.since_fired.double().mean()),
            "density_hist": density_histogram(window, rows),
            "lr": m.optimizer.param_groups[0]["lr"],
            "seconds_per_step": m.window_seconds / max(m.window_steps, 1),
            **{k: float(v) for k, v in out.extra.items()},
        }
        m.window_fires.zero_()
        m.window_rows = 0
        m.window_seconds, m.window_steps = 0.0, 0

    # -- the loop ---------------------------------------------------------------------

    def fit(self, batches: Callable[[int], Iterable] | Iterable, total_steps: int) -> None:
        """Train for ``total_steps`` on ``batches``.

        ``batches`` is either a function ``skip_rows → iterable`` that restarts the stream
        after ``skip_rows`` rows of the global stream (all ranks together; the callable
        yields this rank's part of each global batch), which makes resuming cheap and exact,
        or an iterable of this rank's batches, which a resumed run reads past the rows it
        had consumed.
        """
        torch.manual_seed(self.cfg.seed + self.dist.rank)  # ranks sample (vSAE noise) independently
        resumed = self._resume()
        stream = _open(batches, self.rows, self.local_rows)
        if not resumed:
            first = next(stream, None)
            if first is None:
                raise SaelabError("the activation stream is empty")
            self.initialise(first)
            stream = _prepend(first, stream)
            self.log.reset()
        bar = progress_bar(
            total=total_steps,
            initial=self.step,
            desc="train",
            unit="step",
            disable=not self.progress,
            dynamic_ncols=True,
            leave=False,
        )
        start = time.time()
        try:
            while self.step < total_steps:
                batch = next(stream, None)
                if batch is None:
                    break
                logged = self._logging_step(total_steps)
                self.train_step(batch, total_steps)
                bar.update(1)
                if logged:
                    self.log.write(self.step, self.rows, time.time() - start, {m.name: m.last for m in self.members})
                    bar.set_postfix({m.name: f"fvu={m.last['fvu']:.3f}" for m in self.members[:3]})
                if self.cfg.checkpoint_every and self.step % self.cfg.checkpoint_every == 0:
                    self._save_checkpoint()
            self._save_checkpoint()
        finally:
            bar.close()
            self.log.close()


def _open(batches, global_rows: int, local_rows: int) -> Iterator[Batch]:
    if callable(batches):
        return (as_batch(b) for b in batches(global_rows))
    return _skipping((as_batch(b) for b in batches), local_rows)


def _skipping(stream: Iterator[Batch], skip_rows: int) -> Iterator[Batch]:
    """Drop the first ``skip_rows`` rows of a stream that cannot seek."""
    for batch in stream:
        if skip_rows <= 0:
            yield batch
            continue
        n = next(iter(batch.values())).shape[0]
        if skip_rows >= n:
            skip_rows -= n
            continue
        yield {k: v[skip_rows:] for k, v in batch.items()}
        skip_rows = 0


def _prepend(first: Batch, rest: Iterator[Batch]) -> Iterator[Batch]:
    yield first
    yield from rest
