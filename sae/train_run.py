"""A training run: SAEs on hooks of a language model, one activation stream, held-out scores.

This is where language models meet the trainer: it builds the activation store for the
union of the SAEs' hooks (harvesting gradients only if a gradient SAE needs them), sets
each SAE's input scale from the store's norm statistics, trains, saves every SAE with the
scale folded in, and measures all of them on held-out tokens with the inference encoder.

A transcoder is an SAE entry with ``hook_out``: any family, reading ``hook`` and trained to
predict ``hook_out`` (``sae.skip: true`` adds the skip connection). Both hooks join the one
store, so each input row and its target come from the same forward pass, token and order.
Input and target are each scaled by their own √d / E‖v‖ and both scales are folded into the
saved weights.

Run directory: one SAE → its ``cfg.json`` and weights at the top; several → one
subdirectory per SAE name. Always: ``run_config.json``, ``metrics.jsonl``,
``checkpoint/`` and ``sweep_summary.json``. Running the same config into the same
directory again resumes from the last checkpoint.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Annotated, Any

import torch
from pydantic import Field, ValidationError, field_validator, model_validator

from sae.architectures import SAEConfig, family
from sae.architectures.config_union import FamilyConfig
from sae.atomic import write_json
from sae.collective import SINGLE, Collective
from sae.config import FrozenConfig, build_config, describe_validation_error
from sae.errors import ConfigError, SaelabError
from sae.heldout import measure
from sae.saving import save_sae
from sae.store import ActivationStore, DataConfig, StoreConfig, StreamingStore, open_store
from sae.trainer import RESUMABLE as RESUMABLE_CHANGES
from sae.trainer import Member, Trainer, TrainerConfig, as_batch

SCHEMA_VERSION = 1


class SAESpec(FrozenConfig):
    """One SAE of a run."""

    name: str | None = Field(None, description="Name (default: architecture, plus '@hook' off the residual stream).")
    hook: str = Field(..., description="Hook point it reads.")
    hook_out: str | None = Field(
        None,
        description="Transcoders: the hook point whose activation the code of 'hook' predicts (e.g. "
        "blocks.1.mlp.hook_in -> blocks.1.hook_mlp_out); any family trains as a transcoder. None: an SAE.",
    )
    sae: Annotated[SAEConfig, FamilyConfig] = Field(
        ...,
        description="The SAE's family config, chosen by 'architecture' (one section per family in "
        "docs/configs.md); d_in comes from the hook when omitted.",
    )
    lr: float | None = Field(None, gt=0, description="Learning rate for this SAE (default: the trainer's).")
    seed: int | None = Field(
        None,
        description="Initialisation seed of this SAE alone, so its starting weights do not "
        "depend on the other SAEs of the run (default: drawn in order from the trainer's seed).",
    )

    @model_validator(mode="after")
    def _transcoder(self) -> SAESpec:
        if self.hook_out is None:
            if self.sae.skip:
                raise ValueError("sae.skip is a skip transcoder's: it needs hook_out")
            if self.sae.d_out is not None:
                raise ValueError("sae.d_out is a transcoder's output width: it needs hook_out")
        elif "apply_b_dec_to_input" in self.sae.model_fields_set and self.sae.apply_b_dec_to_input:
            raise ValueError("a transcoder's b_dec lives in its output space: sae.apply_b_dec_to_input must be false")
        return self

    def resolved_name(self) -> str:
        if self.name:
            return self.name
        arch = self.sae.architecture
        if self.hook_out is not None:
            return f"{arch}_{'skip_' if self.sae.skip else ''}transcoder@{self.hook}"
        return arch if "hook_resid" in self.hook else f"{arch}@{self.hook}"


class HeldOutConfig(FrozenConfig):
    """How the trained SAEs are measured."""

    n_tokens: int = Field(1_000_000, gt=0, description="Held-out rows measured (tokens other than BOS/padding).")
    seed: int = Field(10_001, description="Seed of the held-out text stream (differs from training).")
    pca_rank: int = Field(16, gt=0, description="Rank of the PCA baseline.")
    l0_target: float | None = Field(None, gt=0, description="Expected held-out L0; runs outside the band are flagged.")
    l0_tolerance: float = Field(0.1, ge=0, description="Band half-width as a fraction of l0_target.")


class RunConfig(FrozenConfig):
    """``saelab train`` configs."""

    data: DataConfig = Field(default_factory=DataConfig, description="Where the activations come from.")
    saes: list[SAESpec] = Field(..., min_length=1, description="The SAEs trained side by side.")
    trainer: TrainerConfig = Field(default_factory=TrainerConfig, description="Optimisation and bookkeeping.")
    heldout: HeldOutConfig | None = Field(default_factory=HeldOutConfig, description="None: skip held-out scores.")

    @field_validator("data", mode="before")
    @classmethod
    def _no_hooks_in_data(cls, data):
        """The hooks (and whether gradients are read) follow from the SAEs; a second list would disagree."""
        if isinstance(data, dict) and ({"hooks", "with_grads"} & data.keys()):
            raise ValueError("keys 'data.hooks' and 'data.with_grads' come from the SAEs; remove them")
        return data


def store_config(cfg: RunConfig, **override) -> StoreConfig:
    """The store for ``cfg``: its data section, reading every SAE's hook once, with gradients
    when a family needs them."""
    hooks = list(dict.fromkeys(h for s in cfg.saes for h in (s.hook, s.hook_out) if h is not None))
    grads = any(family(s.sae.architecture).needs_gradients for s in cfg.saes)
    data = {**cfg.data.model_dump(), "hooks": hooks, "with_grads": grads, **override}
    try:
        return StoreConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(describe_validation_error(e, None, at=("data",))) from None


def build_saes(cfg: RunConfig, d_in_of) -> dict[str, tuple]:
    """name → (sae, spec), configs validated with d_in from the hook (and a transcoder's
    d_out from hook_out; its input is never centred by b_dec)."""
    out = {}
    for i, spec in enumerate(cfg.saes):
        cls = family(spec.sae.architecture).sae_class
        d_in = d_in_of(spec.hook)
        if spec.sae.d_in not in (None, d_in):
            raise ConfigError(
                f"saes[{i}].sae: key 'd_in': {spec.sae.d_in} does not match hook {spec.hook} (d_in {d_in})"
            )
        fields = {**spec.sae.model_dump(), "d_in": d_in}
        if spec.hook_out is not None:
            if not cls.can_transcode():
                raise ConfigError(f"saes[{i}]: family {spec.sae.architecture!r} does not train as a transcoder yet")
            fields.update(d_out=d_in_of(spec.hook_out), apply_b_dec_to_input=False)
        sae_cfg = build_config(cls.config_class, fields, f"saes[{i}].sae")
        name = spec.resolved_name()
        if name in out:
            raise ConfigError(f"saes[{i}]: duplicate SAE name {name!r}; give it a 'name'")
        if spec.seed is None:
            sae = cls(sae_cfg)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(spec.seed)
                sae = cls(sae_cfg)
        out[name] = (sae, spec)
    return out


def folded_copy(sae, scale: float, target_scale: float | None = None):
    """The SAE rewritten for raw (unscaled) inputs (and a transcoder's raw targets)."""
    copy = type(sae)(sae.cfg).to(sae.W_enc.device)
    copy.load_state_dict(sae.state_dict())
    copy.fold_input_scale(scale)
    if target_scale is not None:
        copy.fold_output_scale(target_scale / scale)
    return copy.eval()


def _run_identity(cfg: RunConfig) -> dict:
    """What a run directory's ``run_config.json`` must match for the run to continue there:
    the data, the SAEs and the trainer settings, bar held-out scoring and ``RESUMABLE_CHANGES``
    (``Trainer.identity`` is the checkpoint's side of the same rule)."""
    dump = cfg.model_dump(mode="json")
    dump.pop("heldout")
    for key in RESUMABLE_CHANGES:
        dump["trainer"].pop(key)
    return dump


def check_run_dir(cfg: RunConfig, out: Path) -> None:
    """Refuse a directory that holds a different run (reads only)."""
    path = out / "run_config.json"
    if path.exists():
        try:
            old = RunConfig.model_validate(json.loads(path.read_text()))
        except (ValueError, ValidationError):
            raise SaelabError(f"{out}: holds a run_config.json saelab cannot read; use another --out") from None
        if _run_identity(old) != _run_identity(cfg):
            raise SaelabError(
                f"{out} holds a different run (other data, SAEs or trainer settings); use another --out or remove it"
            )
    elif out.exists() and any(out.iterdir()):
        raise SaelabError(f"{out} is not empty and holds no saelab run; use another --out")


def claim_run_dir(cfg: RunConfig, out: Path) -> None:
    """Write ``run_config.json`` (after ``check_run_dir``; the data cache may live inside ``out``)."""
    write_json(out / "run_config.json", cfg.model_dump(mode="json"))


def rank_batches(store: ActivationStore, global_batch: int, collective: Collective) -> tuple:
    """``(batches, total_steps)`` for ``Trainer.fit``: this rank's part of each global batch.

    One process reads the store's batches as they are. Over N ranks a cached store is
    read in its global order by every rank, which keeps its slice of each global batch,
    so N processes see exactly the batches one process would; a streaming store is
    sharded by token batch (each rank harvests and mixes its own share), which keeps the
    harvest cost divided by N and the batches' distribution the same, not the rows.
    """
    world, rank = collective.world_size, collective.rank
    if global_batch % world:
        raise ConfigError(f"trainer.batch_size {global_batch} does not split evenly over {world} processes")
    local = global_batch // world
    if not collective.distributed:
        return (lambda skip: store.batches(global_batch, skip_rows=skip)), store.count_rows() // global_batch
    if isinstance(store, StreamingStore):
        rows = int(collective.all_reduce(torch.tensor([store.count_rows()]), op="min")[0])
        return (lambda skip: store.batches(local, skip_rows=skip // world)), rows // local

    def mine(skip: int):
        for batch in store.batches(global_batch, skip_rows=skip):
            if len(batch) < global_batch:
                return
            yield batch.rows(rank * local, (rank + 1) * local)

    return mine, store.count_rows() // global_batch


def train(
    cfg: RunConfig,
    out_dir: str | Path,
    progress: bool = True,
    model=None,
    tokenizer=None,
    collective: Collective = SINGLE,
) -> dict:
    """Train, save and measure every SAE of ``cfg``; returns the summary (rank 0's is the real one).

    Over several ranks (``collective``), every rank trains on its part of each global
    batch; rank 0 alone writes the run directory, saves the SAEs and measures them.
    """
    from sae.hooks import resolve_hook, resolve_pair
    from sae.store import load_for

    started = time.time()
    out = Path(out_dir)
    scfg = store_config(cfg)
    model, tokenizer = load_for(scfg, model, tokenizer)
    specs = {spec.hook: resolve_hook(model, spec.hook) for spec in cfg.saes}
    for spec in cfg.saes:
        if spec.hook_out is not None:
            specs[spec.hook_out] = resolve_pair(model, spec.hook, spec.hook_out)[1]
    torch.manual_seed(cfg.trainer.seed)
    saes = build_saes(cfg, lambda hook: specs[hook].d_in)
    if collective.rank == 0:
        check_run_dir(cfg, out)  # before any work; the directory is written only once the data is known good
    progress = progress and collective.rank == 0

    store = open_store(scfg, model, tokenizer, progress=progress, collective=collective)
    members = []
    for name, (sae, spec) in saes.items():
        # The lab's one activation-scale convention, SAELens' ``normalize_activations:
        # expected_average_only_in``: inputs are multiplied by √d_in / E‖x‖ (E over the store's
        # first batches, ``norm_stats``), so that E‖x‖ = √d_in after scaling (not E‖x‖² = d_in,
        # which would need the root-mean-square norm). The scale is folded into the saved
        # weights (``folded_copy``), so a saved SAE reads raw activations.
        # A transcoder's target gets its own scale, √d_out / E‖y‖, by the same rule.
        scale = _scale(store, spec.hook, sae.cfg.d_in, cfg.trainer.normalize_activations)
        target_scale = 1.0
        if spec.hook_out is not None:
            target_scale = _scale(store, spec.hook_out, sae.cfg.d_out, cfg.trainer.normalize_activations)
        members.append(Member.reading(name, sae, spec.hook, scale, spec.lr, spec.hook_out, target_scale))
    batches, total_steps = rank_batches(store, cfg.trainer.batch_size, collective)
    if total_steps == 0:
        raise SaelabError(f"the token budget gives fewer rows than one batch of {cfg.trainer.batch_size}")
    if collective.rank == 0:
        claim_run_dir(cfg, out)
    collective.barrier()
    trainer = Trainer(members, cfg.trainer, out, dist=collective, progress=progress)
    trainer.fit(batches, total_steps)
    trained = time.time()
    if collective.rank != 0:
        return {"kind": "sweep", "rank": collective.rank, "train_steps": trainer.step}

    single = len(members) == 1
    folded = {}
    for m in members:
        spec = saes[m.name][1]
        hook = specs[spec.hook]
        sae = folded_copy(m.sae, m.scale, m.target_scale if spec.hook_out else None)
        folded[m.name] = (sae, spec.hook, spec.hook_out) if spec.hook_out else (sae, spec.hook)
        out_hook = specs[spec.hook_out] if spec.hook_out else None
        save_sae(
            sae,
            out if single else out / m.name,
            metadata={
                "hook": spec.hook,
                "tl_hook": hook.tl_name,
                "head": hook.head,
                "model": scfg.model,
                "context_size": scfg.context_size,
                "dataset": scfg.source.model_dump(mode="json"),
                "activation_scale": m.scale,
                **(
                    {"hook_out": spec.hook_out, "tl_hook_out": out_hook.tl_name, "target_scale": m.target_scale}
                    if out_hook
                    else {}
                ),
                "train_rows": trainer.rows,
                "train_steps": trainer.step,
                "name": m.name,
            },
        )
    summary: dict[str, Any] = {
        "kind": "sweep",
        "schema_version": SCHEMA_VERSION,
        "model": scfg.model,
        "train_tokens": scfg.n_tokens,
        "train_rows": trainer.rows,
        "train_steps": trainer.step,
        "saes": {},
    }
    if cfg.heldout is not None:
        scores, rows = heldout_scores(cfg, folded, model, tokenizer, progress)
        summary["heldout_rows"] = rows
        summary["saes"] = scores
        add_l0_flags(summary, cfg.heldout)
        for name, row in scores.items():
            write_json((out if single else out / name) / "heldout.json", row)
            row.pop("densities", None)
            row["architecture"] = folded[name][0].cfg.architecture
    summary["seconds"] = {
        "train": round(trained - started, 1),
        "heldout": round(time.time() - trained, 1),
        "total": round(time.time() - started, 1),
    }
    write_json(out / "sweep_summary.json", summary)
    return summary


def _scale(store, hook: str, width: int, normalize: bool) -> float:
    """√width / E‖v‖ at ``hook`` (1 when normalisation is off or the rows are all zero)."""
    norm = store.norm_stats(hook) if normalize else 0.0
    return math.sqrt(width) / norm if norm > 0 else 1.0


def add_l0_flags(summary: dict, heldout: HeldOutConfig) -> None:
    """Mark each SAE in or out of the L0 band; list the ones outside (flagged, not hidden)."""
    if heldout.l0_target is None:
        return
    lo = heldout.l0_target * (1 - heldout.l0_tolerance)
    hi = heldout.l0_target * (1 + heldout.l0_tolerance)
    summary["l0_band"] = [lo, hi]
    for row in summary["saes"].values():
        row["l0_in_band"] = lo <= row["l0"] <= hi
    summary["outside_l0_band"] = [n for n, r in summary["saes"].items() if not r["l0_in_band"]]


def heldout_scores(cfg: RunConfig, folded: dict, model, tokenizer, progress: bool) -> tuple[dict, int]:
    """Scores on ``heldout.n_tokens`` rows of a text stream with another seed (rows exclude BOS,
    so a few percent more tokens are harvested and the surplus is dropped)."""
    n_rows = cfg.heldout.n_tokens
    hcfg = store_config(
        cfg,
        seed=cfg.heldout.seed,
        n_tokens=math.ceil(n_rows * 1.1) + 1024,
        cache_dir=None,
        with_grads=False,
        buffer_rows=16384,
    )
    store = open_store(hcfg, model, tokenizer, progress=progress)

    def rows_up_to_budget():
        seen = 0
        for batch in store.batches(8192):
            batch = as_batch(batch)
            take = min(n_rows - seen, next(iter(batch.values())).shape[0])
            yield {k: v[:take] for k, v in batch.items()}
            seen += take
            if seen >= n_rows:
                return

    scores = measure(folded, rows_up_to_budget(), pca_rank=cfg.heldout.pca_rank)
    return scores, next(iter(scores.values()))["rows"] if scores else 0
