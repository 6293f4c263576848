"""SAEBench's RAVEL (``eval_type_id: ravel``): are a name's city, job and food in separate latents?

The organism's corpus states a name's facts as ``"NAME lives in CITY."``, ``"NAME works as a
JOB."`` and ``"NAME likes to eat FOOD."``; the prompts here end before the fact
(``"{corpus sentence} NAME lives in"``), so the model's next token is the attribute's value.
Only prompts the clean model completes correctly (top-1) are used (SAEBench filters the same way).

For an attribute A, a base prompt (name b) and a source name s (same corpus sentence), the
SAE's codes at the **name position** are patched: f' = f_b with A's latents taken from f_s,
and the model runs on x_b + decode(f') − decode(f_b) there (the SAE's error term kept).

- cause: among base prompts querying A whose value differs between b and s, the share whose
  completion becomes s's value;
- isolation: among base prompts querying another attribute B (b's and s's B values differ),
  the share whose completion stays b's value;
- disentanglement = (cause + isolation) / 2 (SAEBench's code; its README writes a 4-term mean).

A's latents are chosen on pairs of **train names** only, by attribution patching (the
first-order effect of patching one latent: (f_s,i − f_b,i) · (∂L/∂x · W_dec,i), L the source
value's logit lead over the base value on cause pairs, the base value's lead over the source's
on isolation pairs; score = mean cause gain − mean isolation loss), the top n; n is the value
of ``n_values`` with the best disentanglement on train-name pairs, and the scores are reported
on pairs of held-out test names (each n's test scores are in the details). A full-residual
patch at the same position (every dimension from s) is reported beside them: its cause is the
most any dictionary can reach at this hook and position. Beside it, an attribute probe: per
attribute, a multinomial L2 logistic regression from the hook's row at the patched position to
the attribute's value, fitted on train names and scored on held-out names against the majority
value. Facts are random per name, so a probe that generalises to unseen names needs a direction
per value shared across names, the structure an attribute's latents would patch; at chance, no
dictionary can separate the attributes there (cause moves only with the name's whole identity,
so disentanglement stays near 0.5 for every SAE and control).

Deviations from SAEBench: SAEBench learns a binary mask over latents per attribute (MDBM,
trained by gradient on cause and isolation losses, temperature-annealed); here the mask is the
top-n of a one-step linearisation of the same objective (one backward pass per pair batch)
with n picked on train names: cheaper, and exact for a model linear in the patched row.
The error term is kept (SAEBench's default replaces the residual by decode(f')), so the
score measures the patched latents, not the SAE's reconstruction error. One token is
generated (the organism's facts are one token; SAEBench generates 6 and matches the value
in the text). The position is the name (SAEBench's entity position): at the lab's
usual hook (blocks.1 resid_post) the facts are still at the name, moved to the last
position by layer 2's attention (a full patch at the last position there moves ≤ 5% of
completions, at the name ≥ 95%); ``position: last`` patches the prompt's last token instead.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from evals.saebench import concepts
from evals.saebench.output import document
from evals.saebench.probes import fit_multinomial
from evals.saebench.scr import codec
from evals.saebench.tpp import decoder_rows
from sae.errors import SaelabError
from sae.progress import progress_bar

EVAL_TYPE_ID = "ravel"
ATTRIBUTES = ("city", "job", "food")
TEMPLATES = {"city": " lives in", "job": " works as a", "food": " likes to eat"}
DEFINITIONS = {
    "cause_score": "share of base prompts querying attribute A whose completion becomes the source name's value "
    "when A's latents are patched in from the source name (values differ), held-out names",
    "isolation_score": "share of base prompts querying another attribute B whose completion stays the base "
    "name's value under the same patch (B's values differ), held-out names",
    "disentanglement_score": "(cause_score + isolation_score) / 2",
    "latents": "per attribute, the top-n latents by attribution patching on train-name pairs (first-order gain "
    "of the source value's logit lead on cause pairs minus loss of the base value's lead on isolation pairs); "
    "n picked by train-name disentanglement",
    "attribute_probe": "details only: per attribute, held-out-name accuracy of a multinomial L2 logistic probe for "
    "its value at the patched position, beside the majority value's; at chance, no dictionary can separate the "
    "attributes there",
}


@dataclass
class World:
    """The prompts of one RAVEL run: per (context, name, attribute) the tokens, and the clean model's verdict."""

    contexts: list[str]
    names: list[str]
    facts: dict[str, dict[str, str]]
    value_ids: dict[str, dict[str, int]]  # attribute → value → token id
    tokens: dict[tuple[int, str, str], list[int]]
    correct: dict[tuple[int, str, str], bool]
    position: dict[tuple[int, str, str], int]  # the patched position of each prompt
    train_names: set[str]


def build(model, tokenizer, model_name: str, n_contexts: int, test_fraction: float, position: str, seed: int):
    from circuits.tasks.vocabulary import NAMES
    from organism import world

    enc = concepts.Encoder(tokenizer)
    facts = world.facts(concepts.world_seed(model_name))
    value_ids = {}
    for attr in ATTRIBUTES:
        value_ids[attr] = {}
        for v in {facts[n][attr] for n in NAMES}:
            if not enc.single(v):
                raise SaelabError(f"ravel: value {v!r} of {attr} is not one token of the model's vocabulary")
            value_ids[attr][v] = tokenizer(concepts.BOS_SEP + v)["input_ids"][0]
    rng = random.Random(f"{seed}:ravel")
    ctx = concepts.contexts(n_contexts, seed)
    tokens, pos = {}, {}
    for ci, c in enumerate(ctx):
        name_pos = None
        for name in NAMES:
            prefix = enc(f"{c} {name}")
            for attr in ATTRIBUTES:
                ids = enc(f"{c} {name}{TEMPLATES[attr]}")
                if prefix is None or ids is None:
                    continue
                name_pos = len(prefix) - 1
                tokens[(ci, name, attr)] = ids
                pos[(ci, name, attr)] = name_pos if position == "entity" else len(ids) - 1
    order = sorted(NAMES)
    rng.shuffle(order)
    train = set(order[round(test_fraction * len(order)) :])
    keys = list(tokens)
    logits = last_logits(model, [tokens[k] for k in keys], {}, None, None)
    correct = {k: int(logits[i].argmax()) == value_ids[k[2]][facts[k[1]][k[2]]] for i, k in enumerate(keys)}
    return World(ctx, list(NAMES), facts, value_ids, tokens, correct, pos, train)


@torch.no_grad()
def last_logits(model, prompts: list[list[int]], edits: dict, spec, positions, batch_size: int = 64):
    """Next-token logits at each prompt's last token; ``edits``: prompt index → a delta added to the hook's
    row at ``positions[index]``."""
    device = next(model.parameters()).device
    out = []
    for lo in range(0, len(prompts), batch_size):
        chunk = prompts[lo : lo + batch_size]
        width = max(len(p) for p in chunk)
        tokens = torch.zeros(len(chunk), width, dtype=torch.long)
        for i, p in enumerate(chunk):
            tokens[i, : len(p)] = torch.tensor(p)
        rows = [i for i in range(len(chunk)) if lo + i in edits]
        hooks = []
        if rows:
            delta = torch.stack([edits[lo + i] for i in rows]).to(device)
            where = torch.tensor([positions[lo + i] for i in rows], device=device)
            idx = torch.tensor(rows, device=device)

            def patch(act, hook=None, idx=idx, where=where, delta=delta):
                x = spec.read(act).clone()
                x[idx, where] = x[idx, where] + delta.to(x.dtype)
                return spec.write(act, x)

            hooks = [(spec.tl_name, patch)]
        logits = model.run_with_hooks(tokens.to(device), fwd_hooks=hooks)
        last = torch.tensor([len(p) - 1 for p in chunk], device=device)
        out.append(logits[torch.arange(len(chunk), device=device), last].float().cpu())
    return torch.cat(out)


@torch.no_grad()
def read_at(model, spec, w: World) -> dict[tuple[int, str, str], torch.Tensor]:
    """The hook's row at each prompt's patched position."""
    keys = list(w.tokens)
    device = next(model.parameters()).device
    out = {}
    for lo in range(0, len(keys), 64):
        chunk = keys[lo : lo + 64]
        width = max(len(w.tokens[k]) for k in chunk)
        tokens = torch.zeros(len(chunk), width, dtype=torch.long)
        for i, k in enumerate(chunk):
            tokens[i, : len(w.tokens[k])] = torch.tensor(w.tokens[k])
        cache = {}

        def capture(act, hook=None, cache=cache):
            cache["x"] = spec.read(act).detach()
            return act

        model.run_with_hooks(tokens.to(device), fwd_hooks=[(spec.tl_name, capture)])
        for i, k in enumerate(chunk):
            out[k] = cache["x"][i, w.position[k]].float().cpu()
    return out


def logit_gradients(model, spec, w: World, x: dict, pairs: list, targets: list[tuple[int, int]], batch_size=32):
    """Per pair, ∂(logit[up] − logit[down])/∂x at the patched position of its base prompt (x unedited)."""
    device = next(model.parameters()).device
    out = []
    for lo in range(0, len(pairs), batch_size):
        chunk, tgt = pairs[lo : lo + batch_size], targets[lo : lo + batch_size]
        keys = [(p[0], p[1], p[3] if len(p) == 4 else None) for p in chunk]
        prompts = [w.tokens[k] for k in keys]
        width = max(len(p) for p in prompts)
        tokens = torch.zeros(len(chunk), width, dtype=torch.long)
        for i, p in enumerate(prompts):
            tokens[i, : len(p)] = torch.tensor(p)
        where = torch.tensor([w.position[k] for k in keys], device=device)
        idx = torch.arange(len(chunk), device=device)
        delta = torch.zeros(len(chunk), x[keys[0]].shape[0], device=device, requires_grad=True)

        def patch(act, hook=None, delta=delta, where=where, idx=idx):
            rows = spec.read(act).clone()
            rows[idx, where] = rows[idx, where] + delta.to(rows.dtype)
            return spec.write(act, rows)

        with torch.enable_grad():
            logits = model.run_with_hooks(tokens.to(device), fwd_hooks=[(spec.tl_name, patch)])
            last = torch.tensor([len(p) - 1 for p in prompts], device=device)
            final = logits[idx, last]
            up = torch.tensor([t[0] for t in tgt], device=device)
            down = torch.tensor([t[1] for t in tgt], device=device)
            objective = (final[idx, up] - final[idx, down]).sum()
            (grad,) = torch.autograd.grad(objective, delta)
        out.append(grad.detach().double().cpu())
    return torch.cat(out)


def attribution_scores(model, spec, w: World, x: dict, encode, W: torch.Tensor, cause: list, iso: list, attr: str):
    """Per latent, the first-order effect of patching it alone: its mean gain of the source value's logit lead on
    cause pairs minus its mean loss of the base value's lead on isolation pairs (attribution patching)."""

    def codes(key):
        with torch.no_grad():
            return encode(x[key][None])[0].double()

    def effects(pairs, targets):
        if not pairs:
            return torch.zeros(W.shape[0], dtype=torch.float64)
        grads = logit_gradients(model, spec, w, x, pairs, targets)  # [pairs, d_in]
        diffs = torch.stack(
            [codes((p[0], p[2], attr)) - codes((p[0], p[1], p[3] if len(p) == 4 else attr)) for p in pairs]
        )
        return diffs * (grads @ W.T)  # [pairs, d_sae]

    ids = w.value_ids
    cause_pairs = [(ci, b, s, attr) for ci, b, s in cause]  # queried attribute: attr
    cause_t = [(ids[attr][w.facts[s][attr]], ids[attr][w.facts[b][attr]]) for _ci, b, s in cause]
    iso_t = [(ids[o][w.facts[b][o]], ids[o][w.facts[s][o]]) for _ci, b, s, o in iso]
    gain = effects(cause_pairs, cause_t).mean(0) if cause else 0
    loss = (-effects(iso, iso_t)).clamp_min(0).mean(0) if iso else 0
    return gain - loss


def attribute_probes(w: World, x: dict) -> dict[str, dict[str, float]]:
    """Per attribute: held-out-name accuracy of a linear probe for its value at the patched position (every
    correctly completed prompt, whatever it queries), and the majority value's accuracy on the same rows."""
    out = {}
    keys = [k for k in w.tokens if w.correct.get(k, False)]
    train = torch.tensor([k[1] in w.train_names for k in keys])
    if not keys or train.all() or not train.any():
        return out
    X = torch.stack([x[k] for k in keys]).double()
    mu, sd = X[train].mean(0), X[train].std(0).clamp_min(1e-6)
    X = (X - mu) / sd
    for attr in ATTRIBUTES:
        values = sorted(w.value_ids[attr])
        y = torch.tensor([values.index(w.facts[k[1]][attr]) for k in keys])
        W, b = fit_multinomial(X[train], y[train], len(values))
        pred = (X[~train] @ W + b).argmax(1)
        majority = int(torch.bincount(y[train], minlength=len(values)).argmax())
        out[attr] = {
            "test_accuracy": float((pred == y[~train]).double().mean()),
            "majority_accuracy": float((y[~train] == majority).double().mean()),
            "classes": len(values),
        }
    return out


def make_pairs(w: World, names: set[str], n_pairs: int, seed: int):
    """(cause pairs, isolation pairs) per attribute among ``names``: (context, base, source[, other attribute])."""
    rng = random.Random(f"{seed}:ravel:pairs:{sorted(names)[:3]}")
    pool = sorted(names)
    cause, iso = {a: [] for a in ATTRIBUTES}, {a: [] for a in ATTRIBUTES}
    for attr in ATTRIBUTES:
        for _ in range(n_pairs * 50):
            if len(cause[attr]) >= n_pairs and len(iso[attr]) >= n_pairs:
                break
            ci = rng.randrange(len(w.contexts))
            b, s = rng.sample(pool, 2)
            if not w.correct.get((ci, s, attr), False):
                continue
            differs = w.facts[b][attr] != w.facts[s][attr]
            if len(cause[attr]) < n_pairs and w.correct.get((ci, b, attr), False) and differs:
                cause[attr].append((ci, b, s))
            other = rng.choice([a for a in ATTRIBUTES if a != attr])
            differs = w.facts[b][other] != w.facts[s][other]
            if len(iso[attr]) < n_pairs and w.correct.get((ci, b, other), False) and differs:
                iso[attr].append((ci, b, s, other))
    return cause, iso


def scores(model, spec, w: World, x: dict, encode, decode, chosen, cause_pairs, iso_pairs) -> dict[str, float]:
    """Cause / isolation / disentanglement of patching ``chosen[attr]`` latents (None: every dimension of x)."""
    prompts, edits, positions, targets, kinds = [], {}, [], [], []
    for attr in ATTRIBUTES:
        for pair in cause_pairs[attr] + iso_pairs[attr]:
            ci, b, s = pair[:3]
            queried = pair[3] if len(pair) == 4 else attr
            key_b, key_s = (ci, b, queried), (ci, s, attr)
            xb, xs = x[key_b], x[key_s]
            if chosen is None:
                delta = xs - xb
            else:
                with torch.no_grad():
                    fb, fs = encode(xb[None]), encode(xs[None])
                    fp = fb.clone()
                    fp[:, chosen[attr]] = fs[:, chosen[attr]]
                    delta = (decode(fp) - decode(fb))[0].float()
            edits[len(prompts)] = delta
            prompts.append(w.tokens[key_b])
            positions.append(w.position[key_b])
            who = s if len(pair) == 3 else b
            targets.append(w.value_ids[queried][w.facts[who][queried]])
            kinds.append("cause" if len(pair) == 3 else "isolation")
    if not prompts:
        return {"cause_score": float("nan"), "isolation_score": float("nan"), "disentanglement_score": float("nan")}
    logits = last_logits(model, prompts, edits, spec, positions)
    hit = (logits.argmax(-1) == torch.tensor(targets)).double()
    kinds_t = torch.tensor([k == "cause" for k in kinds])
    cause = float(hit[kinds_t].mean()) if kinds_t.any() else float("nan")
    iso = float(hit[~kinds_t].mean()) if (~kinds_t).any() else float("nan")
    return {"cause_score": cause, "isolation_score": iso, "disentanglement_score": (cause + iso) / 2}


def ravel_scores(model, spec, w: World, encode, decode, n_values, n_pairs: int, seed: int):
    """(headline metrics, details) for one SAE given by ``encode``/``decode`` at ``spec``."""
    x = read_at(model, spec, w)
    test_names = set(w.names) - w.train_names
    train_pairs = make_pairs(w, w.train_names, n_pairs, seed)
    test_pairs = make_pairs(w, test_names, n_pairs, seed + 1)
    W = decoder_rows(decode, encode(next(iter(x.values()))[None]).shape[1])
    score = {
        a: attribution_scores(model, spec, w, x, encode, W, train_pairs[0][a], train_pairs[1][a], a) for a in ATTRIBUTES
    }
    per_n = {}
    for n in n_values:
        chosen = {a: torch.argsort(score[a], descending=True, stable=True)[: min(n, W.shape[0])] for a in ATTRIBUTES}
        per_n[n] = {
            "train": scores(model, spec, w, x, encode, decode, chosen, *train_pairs),
            "test": scores(model, spec, w, x, encode, decode, chosen, *test_pairs),
            "latents": {a: chosen[a].tolist() for a in ATTRIBUTES},
        }
    best = max(n_values, key=lambda n: (per_n[n]["train"]["disentanglement_score"], -n))
    full = scores(model, spec, w, x, encode, decode, None, *test_pairs)
    details = {
        "chosen_n": best,
        "per_n": {str(n): r for n, r in per_n.items()},
        "full_patch": full,
        "attribute_probe": attribute_probes(w, x),
        "test_pairs": {a: len(test_pairs[0][a]) + len(test_pairs[1][a]) for a in ATTRIBUTES},
        "clean_accuracy": sum(w.correct.values()) / max(len(w.correct), 1),
    }
    return per_n[best]["test"], details


def run(group, settings) -> list[tuple[dict, dict]]:
    entries = [e for e in group.entries if e.out_spec is None]  # a transcoder writes another hook than it reads
    if not entries:
        return []
    model_name = entries[0].info["model"]
    w = build(
        group.model,
        group.tokenizer,
        model_name,
        settings.contexts,
        settings.test_fraction,
        settings.position,
        settings.seed,
    )
    config = {
        "model_name": model_name,
        "random_seed": settings.seed,
        "entity_attribute_selection": {"organism/name": list(ATTRIBUTES)},
        "n_values": settings.n_values,
        "n_pairs_per_attribute": settings.n_pairs,
        "contexts_per_name": settings.contexts,
        "test_fraction": settings.test_fraction,
        "position": settings.position,
        "latent_selection": "attribution patching on train-name pairs; n by train disentanglement (SAEBench: MDBM)",
        "n_generated_tokens": 1,
    }
    out = []
    for e in progress_bar(entries, desc="ravel", disable=not group.progress, leave=False):
        encode, decode = codec(e.sae)
        metrics, details = ravel_scores(
            group.model, e.spec, w, encode, decode, settings.n_values, settings.n_pairs, settings.seed
        )
        doc = document(EVAL_TYPE_ID, config, {"ravel": metrics}, [{"dataset_name": "organism/name", **details}], e.info)
        out.append((e.info, doc))
    return out
