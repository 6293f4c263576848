"""The organism's ground-truth circuits, found once by path patching and frozen.

IOI follows Wang et al. (2022), one role at a time, each with a measurable criterion:

- *name movers*: heads whose direct path to the logits carries the logit difference
  (path-patching effect ≤ −τ) and whose END query attends to the IO more than to S;
  *negative name movers* have the opposite effect (≥ +τ) with the same attention;
  *S-suppression* heads carry it directly too (≤ −τ) but attend to S, writing against it
  (a role the organism has and GPT-2's published circuit does not name);
- *S-inhibition*: heads whose output the name movers' END queries depend on;
- *induction* and *duplicate-token*: heads whose output at S2 the S-inhibition heads'
  keys and values depend on; split by where S2 attends (S1+1: induction, S1: duplicate);
- *previous-token*: heads whose output at S1+1 the induction heads' keys depend on.

Greater-than follows Hanna et al. (2023): MLPs and heads whose direct path to the logits
carries the probability difference, then heads and MLPs whose paths into those MLPs'
inputs at END do.

Effects are relative changes of the mean metric, (patched − clean) / |clean|. Everything
else (the corrupted distribution, thresholds, prompt counts) is recorded in the output
so the file can be regenerated and checked.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from circuits.ablation import MeanAblator
from circuits.tasks import greater_than, ioi
from circuits.tasks.base import TaskBatch
from organism.path_patching import (
    Caches,
    Metric,
    Node,
    Receiver,
    path_patch,
    run_caches,
)
from sae.progress import progress_bar

# One threshold for every criterion: a path carries at least 1% of the clean metric.
IOI_THRESHOLDS = {
    "direct_effect": 0.01,
    "name_mover_attention": 0.2,
    "s_inhibition_effect": 0.01,
    "induction_effect": 0.01,
    "previous_token_effect": 0.01,
    "edge_effect": 0.01,
}
GT_THRESHOLDS = {
    "direct_effect": 0.01,
    "mlp_input_effect": 0.01,
    "reader_value_effect": 0.01,
    "edge_effect": 0.01,
}
N_PROMPTS = 240
SEED = 0
SCHEMA_VERSION = 1


def _mean(x: torch.Tensor) -> float:
    return float(x.mean())


def _effects(
    model,
    batch: TaskBatch,
    caches: Caches,
    senders: Sequence[Node],
    receivers: Sequence[Receiver] | None,
    metric: Metric,
    desc: str,
) -> dict[Node, float]:
    base = _mean(caches.clean_metric)
    out = {}
    for node in progress_bar(senders, desc=desc, leave=False):
        patched = _mean(path_patch(model, batch, caches, [node], receivers, metric))
        out[node] = (patched - base) / abs(base)
    return out


def _heads(model, below_layer: int | None = None) -> list[Node]:
    top = model.cfg.n_layers if below_layer is None else below_layer
    return [Node(layer, h) for layer in range(top) for h in range(model.cfg.n_heads)]


def _top(nodes: Sequence[Node]) -> int:
    """Senders to these receivers can only sit in layers below the deepest of them."""
    return max(n.layer for n in nodes)


def _mlps(model, up_to_layer: int | None = None) -> list[Node]:
    top = model.cfg.n_layers if up_to_layer is None else up_to_layer + 1
    return [Node(layer) for layer in range(top)]


@torch.no_grad()
def _attention(model, batch: TaskBatch, query: str, key: str | torch.Tensor) -> torch.Tensor:
    """[n_layers, n_heads] mean attention from position ``query`` to ``key``."""
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(model.cfg.n_layers)]
    _, cache = model.run_with_cache(batch.tokens, names_filter=names)
    rows = torch.arange(len(batch))
    q = batch.positions[query]
    k = batch.positions[key] if isinstance(key, str) else key
    return torch.stack([cache[name][rows, :, q, k].mean(0) for name in names])


def _faithfulness(model, batch: TaskBatch, circuit: set[Node], all_nodes: set[Node], metric: Metric) -> dict:
    """Circuit alone (the rest mean-ablated over the corrupted distribution) and circuit
    ablated, each as a fraction of the full model's metric."""
    ablator = MeanAblator(model, batch, metric)
    as_key = lambda n: (n.layer, n.head)  # noqa: E731
    full = ablator.full
    alone = ablator.run(as_key(n) for n in all_nodes - circuit)
    ablated = ablator.run(as_key(n) for n in circuit)
    nothing = ablator.run(as_key(n) for n in all_nodes)
    return {
        "full_model_metric": full,
        "circuit_only_metric": alone,
        "circuit_ablated_metric": ablated,
        "all_ablated_metric": nothing,
        "circuit_recovers": alone / full,
        "ablated_leaves": ablated / full,
        "ablation": "mean over the corrupted prompts of the same template, per position",
    }


def _edges(
    model, batch, caches, senders: Sequence[Node], receivers: Sequence[Receiver], metric, threshold: float
) -> list[dict]:
    """Sender → single-receiver path-patching effects that pass ``threshold``."""
    base = _mean(caches.clean_metric)
    edges = []
    for r in receivers:
        for s in senders:
            if s.layer > r.node.layer or (s.layer == r.node.layer and not (r.node.is_mlp and not s.is_mlp)):
                continue
            effect = (_mean(path_patch(model, batch, caches, [s], [r], metric)) - base) / abs(base)
            if abs(effect) >= threshold:
                edges.append(
                    {
                        "sender": str(s),
                        "receiver": str(r.node),
                        "input": r.site,
                        "position": r.position,
                        "effect": round(effect, 4),
                    }
                )
    return edges


def _role_nodes(roles: dict[str, list[Node]]) -> list[dict]:
    """One entry per node: ``role`` is the first role it meets (in the order of
    ``roles``), ``roles`` every role it meets."""
    met: dict[Node, list[str]] = {}
    for role, group in roles.items():
        for n in group:
            met.setdefault(n, []).append(role)
    order = list(roles)

    def key(item: tuple[Node, list[str]]) -> tuple:
        node, rs = item
        return order.index(rs[0]), node.layer, -1 if node.head is None else node.head

    return [
        {"node": str(n), "layer": n.layer, "head": n.head, "role": rs[0], "roles": rs}
        for n, rs in sorted(met.items(), key=key)
    ]


def _table(effects: dict[Node, float]) -> dict[str, float]:
    return {str(n): round(v, 4) for n, v in effects.items()}


def find_ioi(model, tokenizer, n_prompts: int = N_PROMPTS, seed: int = SEED) -> dict:
    t = IOI_THRESHOLDS
    batch = ioi.make_batch(tokenizer, n_prompts, seed=seed)
    batch.positions["S1+1"] = batch.positions["S1"] + 1
    metric = ioi.logit_diff
    caches = run_caches(model, batch, metric)

    direct = _effects(model, batch, caches, _heads(model), None, metric, "IOI: heads → logits")
    att_io = _attention(model, batch, "END", "IO")
    att_s = torch.maximum(_attention(model, batch, "END", "S1"), _attention(model, batch, "END", "S2"))
    movers, negative, direct_other = [], [], []
    for node, eff in direct.items():
        a_io, a_s = float(att_io[node.layer, node.head]), float(att_s[node.layer, node.head])
        attends_io = a_io >= t["name_mover_attention"] and a_io > a_s
        if attends_io and eff <= -t["direct_effect"]:
            movers.append(node)
        elif attends_io and eff >= t["direct_effect"]:
            negative.append(node)
        elif eff <= -t["direct_effect"]:
            direct_other.append(node)
    if not movers:
        raise RuntimeError("no name-mover heads pass the criterion; the organism does not solve IOI")

    nm_queries = [Receiver(n, "q", "END") for n in movers]
    s_inh_fx = _effects(
        model, batch, caches, _heads(model, _top(movers)), nm_queries, metric, "IOI: heads → NM queries"
    )
    s_inh = [n for n, e in s_inh_fx.items() if e <= -t["s_inhibition_effect"]]
    # Heads that raise the logit difference directly without attending to the IO (they
    # attend to S and write against it); a head that is also S-inhibition keeps that role.
    s_suppression = [n for n in direct_other if n not in s_inh]

    ind_fx: dict[Node, float] = {}
    induction, duplicate = [], []
    if s_inh:
        si_inputs = [Receiver(n, site, "S2") for n in s_inh for site in ("k", "v")]
        ind_fx = _effects(model, batch, caches, _heads(model, _top(s_inh)), si_inputs, metric, "IOI: heads → S-inh k/v")
        att_s1 = _attention(model, batch, "S2", "S1")
        att_s1p = _attention(model, batch, "S2", "S1+1")
        for n, e in ind_fx.items():
            if e <= -t["induction_effect"]:
                (induction if att_s1p[n.layer, n.head] > att_s1[n.layer, n.head] else duplicate).append(n)

    prev_fx: dict[Node, float] = {}
    previous = []
    if induction:
        keys = [Receiver(n, "k", "S1+1") for n in induction]
        prev_fx = _effects(
            model, batch, caches, _heads(model, _top(induction)), keys, metric, "IOI: heads → induction keys"
        )
        previous = [n for n, e in prev_fx.items() if e <= -t["previous_token_effect"]]

    roles = {
        "name_mover": movers,
        "negative_name_mover": negative,
        "s_suppression": s_suppression,
        "s_inhibition": s_inh,
        "induction": induction,
        "duplicate_token": duplicate,
        "previous_token": previous,
    }
    circuit = {n for group in roles.values() for n in group}
    edges = _edges(
        model,
        batch,
        caches,
        sorted(circuit, key=str),
        [Receiver(n, "q", "END") for n in movers]
        + [Receiver(n, s, "S2") for n in s_inh for s in ("k", "v")]
        + [Receiver(n, "k", "S1+1") for n in induction],
        metric,
        t["edge_effect"],
    )
    edges += [
        {"sender": str(n), "receiver": "logits", "input": "resid", "position": "END", "effect": round(direct[n], 4)}
        for n in movers + negative + s_suppression
    ]
    return {
        "task": "ioi",
        "metric": "logit(IO) - logit(S) at END",
        "corruption": "ABC: the three name mentions replaced by three distinct random names",
        "n_prompts": n_prompts,
        "seed": seed,
        "thresholds": t,
        "clean_metric": _mean(caches.clean_metric),
        "corrupt_metric": _mean(caches.corrupt_metric),
        "nodes": _role_nodes(roles),
        "edges": edges,
        "faithfulness": _faithfulness(model, batch, circuit, set(_heads(model)), metric),
        "effects": {
            "direct_to_logits": _table(direct),
            "to_name_mover_queries": _table(s_inh_fx),
            "to_s_inhibition_kv": _table(ind_fx),
            "to_induction_keys": _table(prev_fx),
        },
        "attention_end_to_io": [[round(float(x), 4) for x in row] for row in att_io],
    }


def find_greater_than(model, tokenizer, n_prompts: int = N_PROMPTS, seed: int = SEED) -> dict:
    t = GT_THRESHOLDS
    batch = greater_than.make_batch(tokenizer, n_prompts, seed=seed)
    metric = greater_than.prob_diff
    caches = run_caches(model, batch, metric)
    nodes = _heads(model) + _mlps(model)
    direct = _effects(model, batch, caches, nodes, None, metric, "GT: nodes → logits")
    direct_nodes = [n for n, e in direct.items() if e <= -t["direct_effect"]]
    key_mlps = [n for n in direct_nodes if n.is_mlp]
    feeders_fx: dict[Node, float] = {}
    feeders: list[Node] = []
    if key_mlps:
        top = max(n.layer for n in key_mlps)
        receivers = [Receiver(m, "in", "END") for m in key_mlps]
        candidates = [n for n in nodes if n.layer <= top and n not in key_mlps]
        feeders_fx = _effects(model, batch, caches, candidates, receivers, metric, "GT: nodes → MLP inputs")
        feeders = [n for n, e in feeders_fx.items() if e <= -t["mlp_input_effect"]]
    # Heads that carry the year to END read it through their values at YY; find what
    # writes the year there (early MLPs and heads, as in Hanna et al.).
    readers = [n for n in set(direct_nodes) | set(feeders) if not n.is_mlp]
    reader_fx: dict[Node, float] = {}
    year_writers: list[Node] = []
    if readers:
        values = [Receiver(n, "v", "YY") for n in readers]
        candidates = [n for n in nodes if n.layer < _top(readers)]
        reader_fx = _effects(model, batch, caches, candidates, values, metric, "GT: nodes → reader values")
        year_writers = [n for n, e in reader_fx.items() if e <= -t["reader_value_effect"]]
    circuit = set(direct_nodes) | set(feeders) | set(year_writers)
    roles = {"direct": direct_nodes, "mlp_feeder": feeders, "year_writer": year_writers}
    edges = _edges(
        model,
        batch,
        caches,
        sorted(circuit, key=str),
        [Receiver(m, "in", "END") for m in key_mlps] + [Receiver(n, "v", "YY") for n in readers],
        metric,
        t["edge_effect"],
    )
    edges += [
        {"sender": str(n), "receiver": "logits", "input": "resid", "position": "END", "effect": round(direct[n], 4)}
        for n in direct_nodes
    ]
    return {
        "task": "greater-than",
        "metric": "sum p(y > YY) - sum p(y <= YY) over the 100 two-digit year tokens at END",
        "corruption": "01: the start year's last two digits set to 01",
        "n_prompts": n_prompts,
        "seed": seed,
        "thresholds": t,
        "clean_metric": _mean(caches.clean_metric),
        "corrupt_metric": _mean(caches.corrupt_metric),
        "nodes": [{**entry, "kind": "mlp" if entry["head"] is None else "head"} for entry in _role_nodes(roles)],
        "edges": edges,
        "faithfulness": _faithfulness(model, batch, circuit, set(nodes), metric),
        "effects": {
            "direct_to_logits": _table(direct),
            "to_mlp_inputs": _table(feeders_fx),
            "to_reader_values": _table(reader_fx),
        },
    }


def find_circuits(model, tokenizer) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "method": "path patching (Wang et al. 2022; Hanna et al. 2023)",
        "model": {"n_layers": model.cfg.n_layers, "n_heads": model.cfg.n_heads},
        "ioi": find_ioi(model, tokenizer),
        "greater_than": find_greater_than(model, tokenizer),
    }
