"""peers: held-out FVU, L0, dead latents and tokens/s side by side with SAELens, sparsify, dictionary_learning.

One activation stream for both sides (``bench.peer_stream``): the organism's layer-1
activations are harvested once into a safetensors file (``blocks.1.hook_resid_post`` for
SAEs; ``blocks.1.mlp.hook_in`` → ``blocks.1.hook_mlp_out`` for transcoders), train rows in
a fixed order plus held-out rows from another text seed. For each (family, peer) pair the
lab trains the family with its real ``Trainer`` and the peer trains its own implementation
in its own interpreter (``bench/peers/<peer>_parity.py``), both on exactly those rows in
that order, the same number of tokens, batch size and d_sae, the same learning rate,
warm-up and linear decay where the peer has a schedule (sparsify's default ScheduleFree
SignSGD has none), every other setting at each library's documented default; the peer's
full config is dumped into the row. Both sides run one thread (``torch.set_num_threads``),
one after the other within a pair, so a busy machine slows both alike (the lab's trials are
kept within one run, so the second JumpReLU row reuses the first's lab side: the same
training, timed once).

Scores use one formula on both sides (``peer_stream.heldout_stats``), computed here from
each side's held-out reconstructions made with its own *inference* path: FVU =
Σ‖x − x̂‖²/Σ‖x − x̄‖² over the held-out rows, L0 = mean non-zero codes per row, dead
fraction = share of latents that fire on no held-out row. Tokens/s = tokens trained / the
seconds of each side's whole training loop (``throughput``: every step, the side's own
initialisation and bookkeeping included); seconds per step = the median gap between
consecutive batch fetches of that loop (after 2 steps), the typical step beside it.

Budget: every pair trains one pass over the train rows (400 steps of 1024 at the
defaults) except the threshold family, JumpReLU, which trains ``PASSES["jumprelu"]`` = 15
passes over the same rows in the same order on both sides (``--passes``; the row's
``passes``, ``steps`` and ``peer_steps``): its θ is stored as log θ (ours, SAELens) or θ
(dictionary_learning) and Adam moves it about lr per step whatever λ is, so no side can
reach a sparse L0 in 400 steps. The lr warm-up is the same 50 steps and the decay the same
final 20% of all the steps.

Matched L0: k-families (TopK, BatchTopK = the lab's ``mutual_choice``, Matryoshka) use the
same k on both sides. Coefficient families (JumpReLU, Gated) run the same search on both
sides (``coefficient_search``), which assumes neither the knob's direction nor that L0 is
monotone in it: a ×4 log grid around the side's default knob, extended while the nearest
L0 is at an end, then geometric bisection next to the nearest trial, stopping at an L0
within ``--search-tolerance`` (5%) of the target, after ``--search-trials`` trainings, or
after two rounds that bring L0 no nearer (the row's ``coefficient_search`` says so); the
trial nearest the target is reported, with the whole trail. The peer searches first; when its
search ends outside the tolerance of the target (dictionary_learning's JumpReLU stalls near L0
20 at this budget), the lab's search aims at the L0 the peer reached instead
(``matched_target``, the row's ``coefficient_search.ours_target_l0``), so the two are compared
at matched L0. The knob is each library's own (lab: the family's registry coefficient;
SAELens: ``l0_coefficient``/``l1_coefficient``; dictionary_learning: JumpReLU ``target_l0``,
Gated ``l1_penalty``).

Learning rate: where the peer takes the lab's lr schedule (SAELens, dictionary_learning)
both sides train at the same lr. sparsify keeps its own optimiser (schedule-free signum at
5e-3/√(n/2¹⁴) = 0.02 at 1024 latents, where Adam's lab law gives 8e-4), so a 400-step row
would compare step sizes, not implementations; its pairs (``Pair.lr_search``) run the same
lr search on both sides (``lr_search``): each side's *own* default lr times 1/4 … 4 (×2
apart, extended past an end while the best is there), chosen on the FVU of validation rows
from another text seed (``harvest_validation``), never on the held-out rows the row
reports; the row's ``lr_search`` holds both trails and the lrs chosen.

Pairs are keyed by registry family names; a pair whose family the registry lacks (or a
transcoder pair while the lab's trainer has no transcoder target) is skipped with a
one-line reason, printed and kept as a row with ``skipped`` set.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from bench import peer_stream as ps
from bench.saved_runs import runs_after

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache" / "peers"
SAE_HOOK = "blocks.1.hook_resid_post"
TRANSCODER_IN = "blocks.1.mlp.hook_in"
TRANSCODER_OUT = "blocks.1.hook_mlp_out"
L0_TOLERANCE = 0.1
FVU_BAR = 1.05


@dataclass(frozen=True)
class Pair:
    """One (lab family, peer) comparison: ``key`` names the lab family as the issue does,
    ``candidates`` the registry names it may have, ``peer_family`` the peer's own name."""

    key: str
    candidates: tuple[str, ...]
    peer: str
    peer_family: str
    knob_increasing: bool = False  # True: the peer's sparsity knob raises L0 (a target L0); documentation only
    lr_search: bool = False  # True: the peer keeps its own optimiser and lr, so both sides search lr

    @property
    def transcoder(self) -> bool:
        return self.key in ("transcoder", "skip_transcoder")


PAIRS: tuple[Pair, ...] = (
    Pair("topk", ("topk",), "saelens", "topk"),
    Pair("topk", ("topk",), "sparsify", "topk", lr_search=True),
    Pair("topk", ("topk",), "dictionary_learning", "topk"),
    Pair("mutual_choice", ("mutual_choice",), "saelens", "batchtopk"),
    Pair("mutual_choice", ("mutual_choice",), "dictionary_learning", "batchtopk"),
    Pair("jumprelu", ("jumprelu_ste",), "saelens", "jumprelu"),
    Pair("jumprelu", ("jumprelu_ste",), "dictionary_learning", "jumprelu", True),
    Pair("gated", ("gated",), "saelens", "gated"),
    Pair("gated", ("gated",), "dictionary_learning", "gated"),
    Pair("matryoshka_batchtopk", ("matryoshka_batchtopk",), "saelens", "matryoshka_batchtopk"),
    Pair("matryoshka_batchtopk", ("matryoshka_batchtopk",), "dictionary_learning", "matryoshka_batchtopk"),
    Pair("transcoder", ("transcoder", "topk"), "sparsify", "transcoder", lr_search=True),
    Pair("skip_transcoder", ("skip_transcoder", "topk"), "sparsify", "skip_transcoder", lr_search=True),
)
PEERS = ("saelens", "sparsify", "dictionary_learning")
#: the peers' default sparsity knobs (the search starts there); dictionary_learning's JumpReLU
#: knob is its target L0 itself, so it starts at the target
PEER_KNOBS = {("saelens", "jumprelu"): 1.0, ("saelens", "gated"): 1.0, ("dictionary_learning", "gated"): 0.1}
#: passes over the same train rows, per pair key (1 when absent): a threshold family stores
#: θ as log θ (ours, SAELens) or θ (dictionary_learning) and Adam moves it by about lr per
#: step whatever λ is, so from θ₀ ≈ 0.01 a held-out L0 of 16 needs θ ≈ 0.5-0.7, that is
#: Σ lr_t ≈ ln 50 ≈ 4 at lr 8e-4: about 5,000 full-lr steps. 15 passes (6,000 steps at the
#: default 400 per pass, with the same 50 warm-up and final 20% decay) reach it. Gated needs
#: no more: its gate is a linear pre-activation under an L1, and L0 answers λ within 400
#: steps on every side (the gated rows' searches).
PASSES = {"jumprelu": 15}
#: the lr search's grid (``lr_search``): factors of each side's own default lr
LR_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)
VALIDATION_SEED = 20_001


def add_arguments(parser: argparse.ArgumentParser) -> None:
    keys = sorted({p.key for p in PAIRS})
    parser.add_argument("--families", nargs="+", default=keys, help=f"lab families to compare ({', '.join(keys)})")
    parser.add_argument("--peers", nargs="+", default=list(PEERS), help=f"peers ({', '.join(PEERS)})")
    parser.add_argument(
        "--rows",
        default=None,
        metavar="PAIR:PEER,...",
        help="only these rows (e.g. jumprelu:saelens,topk:sparsify; within --families/--peers); the saved "
        "bench/results/peers.json keeps every other row of the previous run",
    )
    parser.add_argument("--n-tokens", type=int, default=409_600, help="training tokens (rows) per side")
    parser.add_argument("--heldout-tokens", type=int, default=65_536, help="held-out rows scored")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--d-sae", type=int, default=1024)
    parser.add_argument("--l0", type=int, default=16, help="k of k-families; target L0 of coefficient families")
    parser.add_argument("--lr", type=float, default=None, help="default: the lab's law 2e-4/sqrt(d_sae/2^14)")
    parser.add_argument("--warmup-steps", type=int, default=50)
    parser.add_argument("--decay-fraction", type=float, default=0.2, help="final fraction with linear lr decay")
    parser.add_argument("--search-trials", type=int, default=6, help="trainings per side in a coefficient search")
    parser.add_argument(
        "--search-tolerance",
        type=float,
        default=0.05,
        help="the coefficient search stops at a held-out L0 within this fraction of the target",
    )
    parser.add_argument(
        "--passes",
        default=",".join(f"{k}={v}" for k, v in PASSES.items()),
        metavar="PAIR=N,...",
        help="passes over the train rows per pair key, both sides (default: %(default)s; others 1)",
    )
    parser.add_argument("--validation-tokens", type=int, default=32_768, help="rows the lr search scores")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on each side")
    parser.add_argument("--seed", type=int, default=0)


# -- the stream ------------------------------------------------------------------------------


def stream_path(hooks: list[str], n_rows: int, heldout_rows: int, seed: int) -> Path:
    key = json.dumps({"hooks": hooks, "n": n_rows, "held": heldout_rows, "seed": seed}, sort_keys=True)
    return CACHE / f"stream_{hashlib.sha256(key.encode()).hexdigest()[:12]}.safetensors"


def _rows(model, tokenizer, hooks: list[str], n_rows: int, seed: int, progress: bool) -> dict[str, torch.Tensor]:
    """The first ``n_rows`` rows of the lab's activation stream (its store, mixing buffer included)."""
    from sae.store import StoreConfig, open_store
    from sae.trainer import as_batch

    cfg = StoreConfig(
        model="organism",
        hooks=hooks,
        n_tokens=math.ceil(n_rows * 1.1) + 1024,  # BOS rows are dropped
        context_size=64,
        lm_batch_size=128,
        seed=seed,
    )
    store = open_store(cfg, model, tokenizer, progress=progress)
    parts: dict[str, list[torch.Tensor]] = {h: [] for h in hooks}
    seen = 0
    for batch in store.batches(8192):
        batch = as_batch(batch)
        take = min(n_rows - seen, next(iter(batch.values())).shape[0])
        for h in hooks:
            parts[h].append(batch[h][:take].float())
        seen += take
        if seen >= n_rows:
            break
    if seen < n_rows:
        raise RuntimeError(f"the stream gave {seen} rows, fewer than {n_rows}")
    return {h: torch.cat(v) for h, v in parts.items()}


def harvest_stream(path: Path, hooks: list[str], n_rows: int, heldout_rows: int, seed: int, progress: bool) -> Path:
    """Harvest once: train rows (text seed ``seed``) and held-out rows (seed 10_001 + seed)."""
    if path.exists():
        return path
    from safetensors.torch import save_file

    from sae.model import load_model

    model, tokenizer = load_model("organism")
    tensors = {}
    for split, rows, s in (("train", n_rows, seed), ("heldout", heldout_rows, 10_001 + seed)):
        for hook, t in _rows(model, tokenizer, hooks, rows, s, progress).items():
            tensors[f"{split}/{hook}"] = t.contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"hooks": json.dumps(hooks), "seed": str(seed)})
    os.replace(tmp, path)
    return path


def validation_path(hooks: list[str], n_rows: int, seed: int) -> Path:
    key = json.dumps({"hooks": hooks, "validation": n_rows, "seed": seed}, sort_keys=True)
    return CACHE / f"validation_{hashlib.sha256(key.encode()).hexdigest()[:12]}.safetensors"


def harvest_validation(path: Path, hooks: list[str], n_rows: int, seed: int, progress: bool) -> Path:
    """Validation rows for the lr search (text seed ``VALIDATION_SEED + seed``): neither the
    train rows nor the held-out rows that are scored, so choosing an lr does not tune on them."""
    if path.exists():
        return path
    from safetensors.torch import save_file

    from sae.model import load_model

    model, tokenizer = load_model("organism")
    rows = _rows(model, tokenizer, hooks, n_rows, VALIDATION_SEED + seed, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({f"validation/{h}": t.contiguous() for h, t in rows.items()}, str(tmp), metadata={"seed": str(seed)})
    os.replace(tmp, path)
    return path


def transcoder_hooks_available() -> str | None:
    """None when the lab reads ``blocks.1.mlp.hook_in`` on the organism, else why not."""
    from sae.errors import SaelabError
    from sae.hooks import resolve_hook
    from sae.model import load_model

    model, _ = load_model("organism")
    try:
        resolve_hook(model, TRANSCODER_IN)
    except SaelabError as e:
        return str(e)
    return None


# -- resolving pairs against the registry -----------------------------------------------------


def resolve(pair: Pair) -> tuple[str | None, str | None]:
    """``(registry family, None)`` for the lab's side of ``pair``, or ``(None, why it is skipped)``."""
    from sae.architectures import families

    trainable = {f.name: f for f in families(trainable=True)}
    if pair.transcoder:  # a transcoder is TopK with an output hook (cfg d_out), skip or not
        return ("topk", None) if "topk" in trainable else (None, "the registry has no topk family")
    for name in pair.candidates:
        if name in trainable:
            return name, None
    return None, f"the registry has no trainable family among {', '.join(pair.candidates)}"


# -- one side's training ------------------------------------------------------------------------


def matryoshka_widths(d_sae: int) -> list[int]:
    """Nested prefix widths of the Matryoshka pairs (both sides): d/8, d/4, d/2, d."""
    return [d_sae // 8, d_sae // 4, d_sae // 2, d_sae]


def our_config(family_name: str, pair: Pair, d_in: int, d_out: int | None, args, knob: float | None) -> dict:
    """Config fields of the lab's side: the shape, k or the coefficient, Matryoshka prefixes,
    transcoder output; every other field at the family's default."""
    from sae.architectures import family

    fam = family(family_name)
    fields = fam.config_class.model_fields
    cfg: dict = {"d_in": d_in, "d_sae": args.d_sae}
    if fam.has_k:
        cfg["k"] = args.l0
    elif knob is not None and fam.coefficient is not None:
        cfg[fam.coefficient.field] = knob
    if pair.key == "matryoshka_batchtopk":
        for name in ("prefixes", "matryoshka_widths", "widths"):
            if name in fields:
                cfg[name] = matryoshka_widths(args.d_sae)
                break
    if pair.transcoder and family_name == "topk":
        cfg.update({"d_out": d_out, "skip": pair.key == "skip_transcoder", "apply_b_dec_to_input": False})
    return cfg


def default_knob(family_name: str) -> float | None:
    from sae.architectures import family

    fam = family(family_name)
    if fam.has_k or fam.coefficient is None:
        return None
    return fam.config_class.model_fields[fam.coefficient.field].default


def parse_passes(text: str | None) -> dict[str, int]:
    """``--passes "jumprelu=15"`` → {"jumprelu": 15}; a bad item is a one-line error."""
    from sae.errors import ConfigError

    if not text:
        return {}
    keys = {p.key for p in PAIRS}
    out = {}
    for item in (s.strip() for s in text.split(",")):
        key, _, n = item.partition("=")
        if key not in keys or not n.isdigit() or int(n) < 1:
            raise ConfigError(f"--passes: {item!r} is not PAIR=N with N >= 1 (pairs: {', '.join(sorted(keys))})")
        out[key] = int(n)
    return out


def passes_for(pair: Pair, args) -> int:
    """Passes over the train rows for ``pair`` (``--passes``, else ``PASSES``, else 1), both sides."""
    table = parse_passes(getattr(args, "passes", None)) if hasattr(args, "passes") else PASSES
    return table.get(pair.key, 1)


def total_steps(pair: Pair, args) -> int:
    return passes_for(pair, args) * ps.steps_for(args.n_tokens, args.batch_size)


def default_lr(args) -> float:
    """The lab's lr law at ``d_sae`` (or ``--lr``): the lr of both sides wherever the peer takes one."""
    return args.lr if args.lr is not None else 2e-4 / math.sqrt(args.d_sae / 2**14)


def schedule(args, steps: int, lr_factor: float = 1.0) -> dict:
    return {
        "lr": default_lr(args) * lr_factor,
        "warmup_steps": args.warmup_steps,
        "decay_steps": round(args.decay_fraction * steps),
    }


def train_ours(
    family_name: str,
    pair: Pair,
    stream: Path,
    args,
    knob: float | None,
    lr_factor: float = 1.0,
    validation: Path | None = None,
) -> dict:
    """Train the lab's family on the stream with its ``Trainer``; held-out outputs (and
    ``validation`` rows' outputs when given) and timing."""
    from sae.architectures import family
    from sae.train_run import folded_copy
    from sae.trainer import Member, Trainer, TrainerConfig

    torch.set_num_threads(args.threads)
    hook_in = TRANSCODER_IN if pair.transcoder else SAE_HOOK
    x = ps.read(str(stream), "train", hook_in)[: args.n_tokens]
    y = ps.read(str(stream), "train", TRANSCODER_OUT)[: args.n_tokens] if pair.transcoder else None
    passes = passes_for(pair, args)
    steps = passes * ps.steps_for(x.shape[0], args.batch_size)
    sched = schedule(args, steps, lr_factor)
    fam = family(family_name)
    cfg = fam.config_class(**our_config(family_name, pair, x.shape[1], None if y is None else y.shape[1], args, knob))
    torch.manual_seed(args.seed)
    sae = fam.sae_class(cfg)
    # the lab's input scale (train_run: √d_in / mean row norm), folded back at the end
    scale = math.sqrt(x.shape[1]) / float(x[: 4 * args.batch_size].norm(dim=-1).mean())
    tcfg = TrainerConfig(
        batch_size=args.batch_size,
        lr=sched["lr"],
        warmup_steps=sched["warmup_steps"],
        decay_fraction=sched["decay_steps"] / steps,
        wandb_project=None,
        checkpoint_every=0,
        seed=args.seed,
    )
    # a transcoder's target gets its own scale, as in train_run (√d_out / mean row norm)
    target_scale = None if y is None else math.sqrt(y.shape[1]) / float(y[: 4 * args.batch_size].norm(dim=-1).mean())
    if y is None:
        member, rows = Member.reading("sae", sae, "x", scale), {"x": x}
    else:
        member, rows = Member.reading("sae", sae, "x", scale, target="y", target_scale=target_scale), {"x": x, "y": y}
    data = ps.TimedBatches(ps.batches(rows, args.batch_size, passes))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer([member], tcfg, tmp, progress=False)
        started = time.perf_counter()
        trainer.fit(data, total_steps=steps)
        seconds = time.perf_counter() - started
    folded = folded_copy(sae, scale, target_scale)

    def run(batch):
        selection, x_hat = folded.reconstruct(batch)
        return x_hat, selection.dense(cfg.d_sae)

    outputs = ps.reconstruct_all(run, ps.read(str(stream), "heldout", hook_in))
    val = None if validation is None else ps.reconstruct_all(run, ps.read(str(validation), "validation", hook_in))
    return {
        "outputs": outputs,
        "validation_outputs": val,
        "passes": passes,
        "steps": data.fetched,
        "seconds_per_step": data.seconds_per_step(),
        "train_seconds": seconds,
        "config": {
            "sae": cfg.model_dump(mode="json"),
            "trainer": tcfg.model_dump(mode="json"),
            "input_scale": scale,
            "target_scale": target_scale,
        },
    }


def threshold_ema(start_step: int) -> dict:
    """dictionary_learning's BatchTopK/Matryoshka inference threshold, scaled to a short run.

    Its defaults start the EMA θ ← β·θ + (1 − β)·min(selected) at step 1000 and average over
    1/(1 − β) = 1000 steps (β = 0.999): the horizon equals the start step. A 400-step run must
    start earlier (else θ is never set); starting at ``start_step`` but keeping β = 0.999 leaves
    θ 70% the first step's batch minimum (0.999^350), which falls 2.5x over the run as the
    encoder settles (3.09 at step 51, 1.25 by step 400 on the organism stream), so the
    held-out L0 lands at half of k (7.5 at k = 16). Scaling both by the same factor keeps
    their ratio: β = 1 − 1/start_step (0.98 at 50); 1000 gives back the defaults.
    """
    return {"threshold_start_step": start_step, "threshold_beta": 1.0 - 1.0 / max(start_step, 1)}


def train_peer(
    pair: Pair,
    stream: Path,
    args,
    knob: float | None,
    tmp: str,
    lr_factor: float = 1.0,
    validation: Path | None = None,
) -> dict:
    """Train the peer's side in its own interpreter; ``lr_factor`` scales the lr it trains
    with (the lab's schedule where it takes one, sparsify's own default lr otherwise)."""
    from bench.peers import run_peer

    passes = passes_for(pair, args)
    steps = total_steps(pair, args)
    out = str(Path(tmp) / f"{pair.peer}_{pair.peer_family}.safetensors")
    from sae.architectures import trainable_family

    sparsity_warmup = 0  # the lab's coefficient warm-up fraction of the same total steps
    try:
        fam = trainable_family(pair.candidates[0]) if not pair.transcoder else None
        if fam is not None and fam.coefficient is not None and fam.coefficient.warmup_field:
            frac = fam.config_class.model_fields[fam.coefficient.warmup_field].default
            sparsity_warmup = round(frac * steps)
    except Exception:  # the family is not registered: the pair was skipped before
        pass
    payload = {
        "peer_family": pair.peer_family,
        "stream": str(stream),
        "hook_in": TRANSCODER_IN if pair.transcoder else SAE_HOOK,
        "hook_out": TRANSCODER_OUT if pair.transcoder else None,
        "n_rows": args.n_tokens,
        "batch_size": args.batch_size,
        "d_sae": args.d_sae,
        "k": args.l0,
        "coefficient": knob,
        "matryoshka_widths": matryoshka_widths(args.d_sae),
        "sparsity_warmup_steps": sparsity_warmup,
        "threads": args.threads,
        "seed": args.seed,
        "out": out,
        "passes": passes,
        "lr_scale": lr_factor,  # sparsify: of its own default lr (the others take "lr")
        **schedule(args, steps, lr_factor),
        **threshold_ema(args.warmup_steps),
    }
    if validation is not None:
        payload["validation_stream"] = str(validation)
        payload["validation_out"] = out.replace(".safetensors", "_validation.safetensors")
    got = run_peer(f"{pair.peer}_parity.py", payload, peer=pair.peer)
    got["outputs"] = ps.read_outputs(out)
    got["validation_outputs"] = None if validation is None else ps.read_outputs(payload["validation_out"])
    got["passes"] = passes
    return got


# -- scoring and the search -------------------------------------------------------------------


def score(side: dict, target: torch.Tensor) -> dict:
    """Held-out scores of one side's outputs against the held-out ``target`` rows."""
    o = side["outputs"]
    return ps.heldout_stats(target, o["x_hat"], o["row_l0"], o["fires"])


def coefficient_search(
    trial, start: float, target: float, max_trials: int, tolerance: float = 0.05
) -> tuple[dict, list[dict]]:
    """The search both sides run: ``trial(knob) -> result`` with an ``l0``; returns the result
    nearest ``target`` (in |log L0/target|) and the trail of (knob, l0, phase).

    It assumes no direction and no monotonicity (a JumpReLU's L0 is not monotone in λ once
    the L0 term saturates Adam's normalisation: SL#720; ours gives L0 15.9 at λ 1 and 37 at
    λ 16 after 6,000 steps):

    1. *grid*: the start, then ×4 and ÷4 around it; while the nearest trial is at an end of
       the knobs tried and no tried pair brackets the target, one more ×4 step beyond that
       end;
    2. *refine*: once the nearest trial has a tried neighbour (in knob order) on the other
       side of the target, the geometric mean of the two; with none (a local extremum of
       L0(knob) short of the target, or a bracket elsewhere), the geometric mean with the
       neighbour nearer the target.

    It stops as soon as L0 is within ``tolerance`` of the target (5% by default, so that
    two sides both stopped are within ±10% of each other), after ``max_trials`` trainings,
    or after two rounds in a row (the grid's first ×4/÷4 pair is one round, each later
    trial one) that bring the nearest L0 less than ``tolerance`` closer: L0 does not reach
    the target by this knob at this budget; the returned result's ``search_stopped`` says
    so (None when the search ended otherwise).
    """

    def miss(l0: float) -> float:
        return abs(math.log(max(l0, 1e-9) / target))

    tried: dict[float, dict] = {}
    trail: list[dict] = []
    best = None
    weak = 0
    stopped = None

    def run(knob: float, phase: str) -> bool:
        nonlocal best
        result = trial(knob)
        tried[knob] = result
        trail.append({"knob": knob, "l0": result["l0"], "phase": phase})
        if best is None or miss(result["l0"]) < miss(best["l0"]):
            best = {**result, "knob": knob}
        return abs(result["l0"] / target - 1) <= tolerance

    def done() -> bool:
        return len(trail) >= max_trials

    if run(start, "grid"):
        best["search_stopped"] = None
        return best, trail
    pending, phase = [start * 4, start / 4], "grid"  # the first round
    while not done():
        before = miss(best["l0"])
        hit = False
        for knob in pending:
            if done():
                break
            if run(knob, phase):
                hit = True
                break
        if hit or done():
            break
        weak = weak + 1 if before - miss(best["l0"]) < math.log1p(tolerance) else 0
        if weak >= 2:
            stopped = (
                f"L0 does not reach the target by the knob: nearest {best['l0']:.4g} at {best['knob']:.4g} "
                f"after {len(trail)} trials (target {target:g})"
            )
            break
        knob, phase = _next_knob(tried, best["knob"], target)
        pending = [knob]
    best["search_stopped"] = stopped
    return best, trail


def _bracketed(tried: dict[float, dict], target: float) -> bool:
    l0s = [r["l0"] for r in tried.values()]
    return min(l0s) < target < max(l0s)


def _next_knob(tried: dict[float, dict], best: float, target: float) -> tuple[float, str]:
    """The next knob and its phase after the grid's first round (``coefficient_search``)."""
    knobs = sorted(tried)
    i = knobs.index(best)
    side = tried[best]["l0"] > target
    neighbours = [knobs[j] for j in (i - 1, i + 1) if 0 <= j < len(knobs)]
    across = [k for k in neighbours if (tried[k]["l0"] > target) != side]
    if across:  # refine: bisect the bracket next to the best
        other = min(across, key=lambda k: abs(math.log(max(tried[k]["l0"], 1e-9) / target)))
        return math.sqrt(best * other), "refine"
    if not _bracketed(tried, target) and i in (0, len(knobs) - 1):  # grid: extend beyond the end
        return (best * 4 if i == len(knobs) - 1 else best / 4), "grid"
    other = min(neighbours, key=lambda k: abs(math.log(max(tried[k]["l0"], 1e-9) / target)))
    return math.sqrt(best * other), "refine"


def lr_search(trial, factors: tuple[float, ...] = LR_FACTORS, extend: int = 2) -> tuple[dict, list[dict]]:
    """The lr search both sides of a ``lr_search`` pair run: ``trial(factor) -> result`` with
    a ``validation_fvu``; returns the result with the lowest validation FVU and the trail.

    Each side multiplies *its own* default lr (the lab's law with Adam; sparsify's 5e-3/√(n/2¹⁴)
    with schedule-free signum) by each of ``factors``; while the best factor is at an end of
    the factors tried, up to ``extend`` more ×2 steps beyond it, so the chosen lr is an
    interior minimum of the grid unless the extension ran out (the trail shows it). The
    score is FVU on the validation rows (another text seed): the held-out rows that the row
    reports are not used to choose.
    """
    tried: dict[float, dict] = {}
    trail: list[dict] = []

    def run(f: float) -> None:
        result = trial(f)
        tried[f] = result
        trail.append({"lr_factor": f, "lr": result.get("lr"), "validation_fvu": result["validation_fvu"]})

    for f in factors:
        run(f)
    for _ in range(extend):
        best = min(tried, key=lambda f: tried[f]["validation_fvu"])
        if best == max(tried):
            run(best * 2)
        elif best == min(tried):
            run(best / 2)
        else:
            break
    best = min(tried, key=lambda f: tried[f]["validation_fvu"])
    return {**tried[best], "lr_factor": best}, trail


def throughput(steps: int, batch_size: int, train_seconds: float) -> float:
    """Tokens per second over a side's whole training loop: every step, its initialisation
    and bookkeeping included, what a researcher waits for.

    Not ``batch_size / seconds_per_step``: the median step hides every step that differs
    from the typical one, and a row's steps are often of two kinds (AuxK starts once latents
    have been silent for ``dead_after_tokens``, half-way through a 400-step row; a threshold
    rule trains through dense GEMMs while many latents fire). The median then sits at the
    switch, or on the cheap half: it put the lab's transcoder at 0.88-1.04x sparsify while
    the lab's loop took 1.13x sparsify's time, and its Gated level with dictionary_learning's
    while its loop took 1.8x as long.
    """
    return steps * batch_size / train_seconds


def speed(ours: dict, peer: dict, batch_size: int) -> dict:
    """The row's speed fields from each side's steps and loop time (``throughput``)."""
    tps = throughput(ours["steps"], batch_size, ours["train_seconds"])
    peer_tps = throughput(peer["steps"], batch_size, peer["train_seconds"])
    return {"tokens_per_s": tps, "peer_tokens_per_s": peer_tps, "tokens_per_s_ratio": tps / peer_tps}


def row(pair: Pair, family_name: str, ours: dict, peer: dict, ours_scores: dict, peer_scores: dict, args) -> dict:
    """One JSON row: both sides' scores and speed, their ratios, whether the bar is met."""
    fast = speed(ours, peer, args.batch_size)
    l0_ok = abs(ours_scores["l0"] / max(peer_scores["l0"], 1e-12) - 1) <= L0_TOLERANCE
    fvu_ratio = ours_scores["fvu"] / max(peer_scores["fvu"], 1e-12)
    return {
        "family": family_name,
        "pair": pair.key,
        "peer": pair.peer,
        "peer_family": pair.peer_family,
        "peer_version": peer["peer_version"],
        "fvu": ours_scores["fvu"],
        "peer_fvu": peer_scores["fvu"],
        "l0": ours_scores["l0"],
        "peer_l0": peer_scores["l0"],
        "dead_fraction": ours_scores["dead_fraction"],
        "peer_dead_fraction": peer_scores["dead_fraction"],
        "seconds_per_step": ours["seconds_per_step"],
        "peer_seconds_per_step": peer["seconds_per_step"],
        **fast,
        "fvu_ratio": fvu_ratio,
        "l0_within_10pct": l0_ok,
        "meets_bar": bool(fvu_ratio <= FVU_BAR and l0_ok and fast["tokens_per_s_ratio"] >= 1),
        "n_tokens": ours["steps"] * args.batch_size,
        "peer_n_tokens": peer["steps"] * args.batch_size,
        "steps": ours["steps"],
        "peer_steps": peer["steps"],
        "passes": ours.get("passes", 1),
        "train_rows": getattr(args, "n_tokens", None),
        "batch_size": args.batch_size,
        "d_sae": args.d_sae,
        "k": args.l0 if "k" in ours["config"]["sae"] else None,
        "threads": args.threads,
        "train_seconds": ours["train_seconds"],
        "peer_train_seconds": peer["train_seconds"],
        "config": ours["config"],
        "peer_config": peer["config"],
        "load_average": list(os.getloadavg()),
        "skipped": None,
    }


def skipped_row(pair: Pair, why: str, args) -> dict:
    keys = ("fvu", "l0", "dead_fraction", "seconds_per_step", "tokens_per_s")
    return {
        "family": pair.key,
        "pair": pair.key,
        "peer": pair.peer,
        "peer_family": pair.peer_family,
        "peer_version": None,
        **dict.fromkeys(keys),
        **{f"peer_{k}": None for k in keys},
        "n_tokens": ps.steps_for(args.n_tokens, args.batch_size) * args.batch_size,
        "d_sae": args.d_sae,
        "peer_config": None,
        "load_average": list(os.getloadavg()),
        "skipped": why,
    }


def compare(pair: Pair, family_name: str, stream: Path, args, tmp: str, cache: dict | None = None) -> dict:
    """Train both sides of ``pair``: one training per side for a k-family, the coefficient
    search where L0 is not set by k, the lr search for a pair whose peer keeps its own
    optimiser (``Pair.lr_search``). ``cache`` keeps the lab's trials within one run (the
    lab's side of a JumpReLU row is the same training whichever peer it faces)."""
    hook_out = TRANSCODER_OUT if pair.transcoder else SAE_HOOK
    target = ps.read(str(stream), "heldout", hook_out)
    cache = {} if cache is None else cache
    validation = None
    if pair.lr_search:
        hooks = [TRANSCODER_IN, TRANSCODER_OUT] if pair.transcoder else [SAE_HOOK]
        validation = harvest_validation(
            validation_path(hooks, args.validation_tokens, args.seed),
            hooks,
            args.validation_tokens,
            args.seed,
            progress=not getattr(args, "json", False),
        )
        val_target = ps.read(str(validation), "validation", hook_out)

    def scored(side: dict) -> dict:
        """Scores of one trial; its outputs are dropped (a search keeps many trials)."""
        s = score(side, target)
        out = {**side, "scores": s, "l0": s["l0"]}
        if validation is not None:
            v = side["validation_outputs"]
            out["validation_fvu"] = ps.heldout_stats(val_target, v["x_hat"], v["row_l0"], v["fires"])["fvu"]
        out.pop("outputs"), out.pop("validation_outputs", None)
        return out

    def ours_trial(knob, lr_factor=1.0):
        key = (family_name, pair.key, pair.transcoder, knob, lr_factor, validation)
        if key not in cache:
            cache[key] = scored(train_ours(family_name, pair, stream, args, knob, lr_factor, validation))
            cache[key]["lr"] = cache[key]["config"]["trainer"]["lr"]
            log_trial(pair, "saelab", knob, lr_factor, cache[key])
        return cache[key]

    def peer_trial(knob, lr_factor=1.0):
        got = scored(train_peer(pair, stream, args, knob, tmp, lr_factor, validation))
        got["lr"] = got["config"].get("lr", schedule(args, 1, lr_factor)["lr"])
        log_trial(pair, pair.peer, knob, lr_factor, got)
        return got

    if pair.lr_search:
        ours, our_trail = lr_search(lambda f: ours_trial(None, f))
        peer, peer_trail = lr_search(lambda f: peer_trial(None, f))
        out = row(pair, family_name, ours, peer, ours["scores"], peer["scores"], args)
        out["lr_search"] = {
            "chosen_on": f"validation FVU ({args.validation_tokens} rows, text seed {VALIDATION_SEED + args.seed})",
            "factors": list(LR_FACTORS),
            "ours": our_trail,
            "peer": peer_trail,
            "ours_lr_factor": ours["lr_factor"],
            "peer_lr_factor": peer["lr_factor"],
            "ours_lr": ours["lr"],
            "peer_lr": peer["lr"],
        }
        return out
    start = default_knob(family_name)
    if start is None:  # k-family (or transcoder): one training per side
        ours = ours_trial(None)
        peer = peer_trial(None)
        return row(pair, family_name, ours, peer, ours["scores"], peer["scores"], args)
    tol = getattr(args, "search_tolerance", 0.05)
    peer_start = PEER_KNOBS.get((pair.peer, pair.peer_family), float(args.l0))
    peer, peer_trail = coefficient_search(peer_trial, peer_start, args.l0, args.search_trials, tol)
    aim = matched_target(args.l0, peer, tol)
    ours, our_trail = coefficient_search(ours_trial, start, aim, args.search_trials, tol)
    out = row(pair, family_name, ours, peer, ours["scores"], peer["scores"], args)
    out["coefficient_search"] = {
        "target_l0": args.l0,
        "ours_target_l0": aim,
        "tolerance": tol,
        "procedure": "log grid x4 around the default, extended while the nearest is at an end, then geometric "
        "bisection next to the nearest (coefficient_search)",
        "ours": our_trail,
        "peer": peer_trail,
        "ours_stopped": ours["search_stopped"],
        "peer_stopped": peer["search_stopped"],
    }
    return out


def matched_target(target: float, peer: dict, tolerance: float) -> float:
    """The L0 the lab's search aims at: ``target``, unless the peer's search ended outside the
    tolerance of it (its knob does not reach it at this budget), then the L0 the peer reached.

    The row compares the two at matched L0 (±10%); a peer that stalls at L0 20 against a
    target of 16 would otherwise make every row fail on L0, whatever either side's FVU."""
    if abs(peer["l0"] / target - 1) <= tolerance:
        return float(target)
    return float(peer["l0"])


def log_trial(pair: Pair, side: str, knob: float | None, lr_factor: float, result: dict) -> None:
    """One stderr line per training of a search, so a long run shows (and keeps) its trail."""
    s = result["scores"]
    val = f" validation_fvu {result['validation_fvu']:.4f}" if "validation_fvu" in result else ""
    print(
        f"peers: {pair.key} vs {pair.peer}, {side}: knob {knob} lr x{lr_factor:g} -> held-out L0 {s['l0']:.2f} "
        f"FVU {s['fvu']:.4f} dead {s['dead_fraction']:.3f}{val} ({result['steps']} steps, "
        f"{result['seconds_per_step'] * 1e3:.1f} ms/step, load {os.getloadavg()[0]:.1f})",
        file=sys.stderr,
        flush=True,
    )


def selected(args) -> list[Pair]:
    from sae.errors import ConfigError

    keys = {p.key for p in PAIRS}
    for f in args.families:
        if f not in keys:
            raise ConfigError(f"--families: unknown family {f!r} (known: {', '.join(sorted(keys))})")
    for p in args.peers:
        if p not in PEERS:
            raise ConfigError(f"--peers: unknown peer {p!r} (known: {', '.join(PEERS)})")
    if args.n_tokens < 4 * args.batch_size:
        raise ConfigError(f"--n-tokens {args.n_tokens} gives fewer than 4 steps of --batch-size {args.batch_size}")
    parse_passes(getattr(args, "passes", None))
    chosen = [p for p in PAIRS if p.key in args.families and p.peer in args.peers]
    wanted = parse_rows(getattr(args, "rows", None))
    return chosen if wanted is None else [p for p in chosen if (p.key, p.peer) in wanted]


def parse_rows(text: str | None) -> set[tuple[str, str]] | None:
    """``--rows "jumprelu:saelens,topk:sparsify"`` → {(pair key, peer)}; None when not given."""
    from sae.errors import ConfigError

    if text is None:
        return None
    known = {(p.key, p.peer) for p in PAIRS}
    wanted = set()
    for item in (s.strip() for s in text.split(",")):
        key, _, peer = item.partition(":")
        if (key, peer) not in known:
            listed = ", ".join(f"{k}:{p}" for k, p in sorted(known))
            raise ConfigError(f"--rows: no row {item!r} (known: {listed})")
        wanted.add((key, peer))
    return wanted


def merge_saved(previous: dict | None, document: dict) -> dict:
    """The saved result of a ``--rows`` run: the previous file's rows with these rows replaced
    (matched on pair and peer) or added, in ``PAIRS`` order; ``runs`` records which rows each
    run produced and when (a row's own ``load_average`` is its own). A run without
    ``--rows`` replaces the file."""
    if previous is None or document["args"].get("rows") is None or not isinstance(previous.get("result"), list):
        return document
    new = {(r["pair"], r["peer"]): r for r in document["result"]}
    rows = {(r["pair"], r["peer"]): r for r in previous["result"]}
    rows.update(new)
    order = {(p.key, p.peer): i for i, p in enumerate(PAIRS)}
    merged = sorted(rows.values(), key=lambda r: order.get((r["pair"], r["peer"]), len(order)))
    kept = sorted(f"{k}:{p}" for k, p in rows if (k, p) not in new)
    runs = runs_after(previous, document, kept, [f"{k}:{p}" for k, p in new])
    return {**document, "result": merged, "runs": runs}


def run(args: argparse.Namespace) -> list[dict]:
    from sae.errors import SaelabError
    from sae.progress import progress_bar

    pairs = selected(args)
    plan, rows = [], []
    for pair in pairs:
        name, why = resolve(pair)
        if name is None:
            print(f"peers: skipped {pair.key} vs {pair.peer}: {why}", file=sys.stderr)
            rows.append(skipped_row(pair, why, args))
        else:
            plan.append((pair, name))
    hooks = [SAE_HOOK]
    if any(p.transcoder for p, _ in plan):
        why = transcoder_hooks_available()
        if why is not None:
            for pair, _ in [(p, n) for p, n in plan if p.transcoder]:
                print(f"peers: skipped {pair.key} vs {pair.peer}: {why}", file=sys.stderr)
                rows.append(skipped_row(pair, why, args))
            plan = [(p, n) for p, n in plan if not p.transcoder]
        else:
            hooks += [TRANSCODER_IN, TRANSCODER_OUT]
    if not plan:
        return rows
    stream = harvest_stream(
        stream_path(hooks, args.n_tokens, args.heldout_tokens, args.seed),
        hooks,
        args.n_tokens,
        args.heldout_tokens,
        args.seed,
        progress=not args.json,
    )
    cache: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for pair, name in progress_bar(plan, desc="peers", unit="pair", disable=args.json, leave=False):
            try:
                rows.append(compare(pair, name, stream, args, tmp, cache))
            except SaelabError as e:  # a peer that cannot be built or fails: its row says so, the rest run
                line = str(e).splitlines()[-1] if str(e) else type(e).__name__
                print(f"peers: {pair.key} vs {pair.peer} failed: {line}", file=sys.stderr)
                rows.append(skipped_row(pair, f"failed: {line}", args))
    return rows
