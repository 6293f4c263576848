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
one after the other within a pair, so a busy machine slows both alike.

Scores use one formula on both sides (``peer_stream.heldout_stats``), computed here from
each side's held-out reconstructions made with its own *inference* path: FVU =
Σ‖x − x̂‖²/Σ‖x − x̄‖² over the held-out rows, L0 = mean non-zero codes per row, dead
fraction = share of latents that fire on no held-out row. Seconds per step = median gap
between consecutive batch fetches of each side's own training loop (after 2 steps);
tokens/s = batch size / seconds per step.

Matched L0: k-families (TopK, BatchTopK = the lab's ``mutual_choice``, Matryoshka) use the
same k on both sides. Coefficient families (JumpReLU, Gated) run the same search on both
sides (``coefficient_search``): start at the side's default knob, multiply or divide it by
4 until the held-out L0 brackets the target, then bisect geometrically, stopping once L0
is within ±10% of the target, after ``--search-trials`` trainings, or when two ×4 moves in a
row leave L0 no nearer the target (the knob does not set L0 at this budget: the row's
``coefficient_search`` says so); the trial nearest the target is reported, with the whole
trail. The knob is each library's own (lab: the family's registry coefficient; SAELens:
``l0_coefficient``/``l1_coefficient``; dictionary_learning: JumpReLU ``target_l0``, whose L0
rises with it by its documentation, Gated ``l1_penalty``).

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
    knob_increasing: bool = False  # True: the peer's sparsity knob raises L0 (a target L0)

    @property
    def transcoder(self) -> bool:
        return self.key in ("transcoder", "skip_transcoder")


PAIRS: tuple[Pair, ...] = (
    Pair("topk", ("topk",), "saelens", "topk"),
    Pair("topk", ("topk",), "sparsify", "topk"),
    Pair("topk", ("topk",), "dictionary_learning", "topk"),
    Pair("mutual_choice", ("mutual_choice",), "saelens", "batchtopk"),
    Pair("mutual_choice", ("mutual_choice",), "dictionary_learning", "batchtopk"),
    Pair("jumprelu", ("jumprelu_ste",), "saelens", "jumprelu"),
    Pair("jumprelu", ("jumprelu_ste",), "dictionary_learning", "jumprelu", True),
    Pair("gated", ("gated",), "saelens", "gated"),
    Pair("gated", ("gated",), "dictionary_learning", "gated"),
    Pair("matryoshka_batchtopk", ("matryoshka_batchtopk",), "saelens", "matryoshka_batchtopk"),
    Pair("matryoshka_batchtopk", ("matryoshka_batchtopk",), "dictionary_learning", "matryoshka_batchtopk"),
    Pair("transcoder", ("transcoder", "topk"), "sparsify", "transcoder"),
    Pair("skip_transcoder", ("skip_transcoder", "topk"), "sparsify", "skip_transcoder"),
)
PEERS = ("saelens", "sparsify", "dictionary_learning")
#: the peers' default sparsity knobs (the search starts there); dictionary_learning's JumpReLU
#: knob is its target L0 itself, so it starts at the target
PEER_KNOBS = {("saelens", "jumprelu"): 1.0, ("saelens", "gated"): 1.0, ("dictionary_learning", "gated"): 0.1}


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


def schedule(args, steps: int) -> dict:
    lr = args.lr if args.lr is not None else 2e-4 / math.sqrt(args.d_sae / 2**14)
    return {"lr": lr, "warmup_steps": args.warmup_steps, "decay_steps": round(args.decay_fraction * steps)}


def train_ours(family_name: str, pair: Pair, stream: Path, args, knob: float | None) -> dict:
    """Train the lab's family on the stream with its ``Trainer``; held-out outputs and timing."""
    from sae.architectures import family
    from sae.train_run import folded_copy
    from sae.trainer import Member, Trainer, TrainerConfig

    torch.set_num_threads(args.threads)
    hook_in = TRANSCODER_IN if pair.transcoder else SAE_HOOK
    x = ps.read(str(stream), "train", hook_in)[: args.n_tokens]
    y = ps.read(str(stream), "train", TRANSCODER_OUT)[: args.n_tokens] if pair.transcoder else None
    steps = ps.steps_for(x.shape[0], args.batch_size)
    sched = schedule(args, steps)
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
    data = ps.TimedBatches(ps.batches(rows, args.batch_size))
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
    return {
        "outputs": outputs,
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


def train_peer(pair: Pair, stream: Path, args, knob: float | None, tmp: str) -> dict:
    from bench.peers import run_peer

    steps = ps.steps_for(args.n_tokens, args.batch_size)
    out = str(Path(tmp) / f"{pair.peer}_{pair.peer_family}.safetensors")
    from sae.architectures import trainable_family

    sparsity_warmup = 0
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
        **schedule(args, steps),
        **threshold_ema(args.warmup_steps),
    }
    got = run_peer(f"{pair.peer}_parity.py", payload, peer=pair.peer)
    got["outputs"] = ps.read_outputs(out)
    return got


# -- scoring and the search -------------------------------------------------------------------


def score(side: dict, target: torch.Tensor) -> dict:
    """Held-out scores of one side's outputs against the held-out ``target`` rows."""
    o = side["outputs"]
    return ps.heldout_stats(target, o["x_hat"], o["row_l0"], o["fires"])


def coefficient_search(
    trial, start: float, target: float, increasing: bool, max_trials: int, tolerance: float = L0_TOLERANCE
) -> tuple[dict, list[dict]]:
    """The search both sides run: ``trial(knob) -> result`` with an ``l0``; returns the result
    nearest ``target`` (in |log L0/target|) and the trail of (knob, l0).

    From ``start``, multiply (L0 too low and the knob raises L0, or too high and it lowers
    L0) or divide by 4 until the target is bracketed, then take the geometric mean of the
    bracket; stop as soon as L0 is within ``tolerance`` of the target. Before a bracket, two
    ×4 moves in a row that each bring L0 less than ``tolerance`` closer (in |log L0/target|)
    end the search: L0 does not answer the knob at this budget (a JumpReLU's log θ moves by
    about lr per Adam step whatever λ is), and more trials would only spend time. The
    returned result's ``search_stopped`` says so (None when the search ended otherwise).
    """
    lo = hi = None  # knobs giving L0 below / above the target
    knob, trail, best = start, [], None
    weak = 0  # consecutive unbracketed moves that did not approach the target

    def miss(l0: float) -> float:
        return abs(math.log(max(l0, 1e-9) / target))

    stopped = None
    for _ in range(max_trials):
        result = trial(knob)
        l0 = result["l0"]
        if trail and (lo is None or hi is None):
            weak = weak + 1 if miss(trail[-1]["l0"]) - miss(l0) < math.log1p(tolerance) else 0
        trail.append({"knob": knob, "l0": l0})
        if best is None or miss(l0) < miss(best["l0"]):
            best = {**result, "knob": knob}
        if abs(l0 / target - 1) <= tolerance:
            break
        if l0 < target:
            lo = knob
        else:
            hi = knob
        if weak >= 2 and (lo is None or hi is None):
            first = trail[-3]
            stopped = (
                f"L0 does not answer the knob: {first['l0']:.4g} at {first['knob']:.4g}, {l0:.4g} at {knob:.4g} "
                f"(target {target:g})"
            )
            break
        if lo is not None and hi is not None:
            knob = math.sqrt(lo * hi)
        elif (l0 < target) == increasing:  # raise the knob: L0 too low and it raises L0, or too high and it lowers it
            knob *= 4
        else:
            knob /= 4
    best["search_stopped"] = stopped
    return best, trail


def row(pair: Pair, family_name: str, ours: dict, peer: dict, ours_scores: dict, peer_scores: dict, args) -> dict:
    """One JSON row: both sides' scores and speed, their ratios, whether the bar is met."""
    tps = args.batch_size / ours["seconds_per_step"]
    peer_tps = args.batch_size / peer["seconds_per_step"]
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
        "tokens_per_s": tps,
        "peer_tokens_per_s": peer_tps,
        "fvu_ratio": fvu_ratio,
        "tokens_per_s_ratio": tps / peer_tps,
        "l0_within_10pct": l0_ok,
        "meets_bar": bool(fvu_ratio <= FVU_BAR and l0_ok and tps >= peer_tps),
        "n_tokens": ours["steps"] * args.batch_size,
        "peer_n_tokens": peer["steps"] * args.batch_size,
        "steps": ours["steps"],
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


def compare(pair: Pair, family_name: str, stream: Path, args, tmp: str) -> dict:
    """Train both sides of ``pair`` (with the coefficient search where L0 is not set by k)."""
    hook_out = TRANSCODER_OUT if pair.transcoder else SAE_HOOK
    target = ps.read(str(stream), "heldout", hook_out)

    def ours_trial(knob):
        side = train_ours(family_name, pair, stream, args, knob)
        s = score(side, target)
        return {**side, "scores": s, "l0": s["l0"]}

    def peer_trial(knob):
        side = train_peer(pair, stream, args, knob, tmp)
        s = score(side, target)
        return {**side, "scores": s, "l0": s["l0"]}

    start = default_knob(family_name)
    if start is None:  # k-family (or transcoder): one training per side
        ours = ours_trial(None)
        peer = peer_trial(None)
        return row(pair, family_name, ours, peer, ours["scores"], peer["scores"], args)
    ours, our_trail = coefficient_search(ours_trial, start, args.l0, False, args.search_trials)
    peer_start = PEER_KNOBS.get((pair.peer, pair.peer_family), float(args.l0))
    peer, peer_trail = coefficient_search(peer_trial, peer_start, args.l0, pair.knob_increasing, args.search_trials)
    out = row(pair, family_name, ours, peer, ours["scores"], peer["scores"], args)
    out["coefficient_search"] = {
        "target_l0": args.l0,
        "ours": our_trail,
        "peer": peer_trail,
        "ours_stopped": ours["search_stopped"],
        "peer_stopped": peer["search_stopped"],
    }
    return out


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
    runs = list(
        previous.get("runs")
        or [
            {
                "rows": sorted(f"{k}:{p}" for k, p in rows if (k, p) not in new),
                "created": previous.get("created"),
                "args": previous.get("args"),
            }
        ]
    )
    runs.append(
        {
            "rows": [f"{k}:{p}" for k, p in new],
            "created": document["created"],
            "args": document["args"],
            "load_average": document["machine"].get("load_average"),
        }
    )
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
    with tempfile.TemporaryDirectory() as tmp:
        for pair, name in progress_bar(plan, desc="peers", unit="pair", disable=args.json, leave=False):
            try:
                rows.append(compare(pair, name, stream, args, tmp))
            except SaelabError as e:  # a peer that cannot be built or fails: its row says so, the rest run
                line = str(e).splitlines()[-1] if str(e) else type(e).__name__
                print(f"peers: {pair.key} vs {pair.peer} failed: {line}", file=sys.stderr)
                rows.append(skipped_row(pair, f"failed: {line}", args))
    return rows
