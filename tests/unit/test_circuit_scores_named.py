"""The discrete-SAE figures are named for what they are: the paper's "edge ROC AUC" is the
head-level AUC of its edge method (``edge_method_roc_auc``); the lab's head-pair AUC is
``pair_roc_auc``; ``edge_roc_auc`` is only ever over edges."""

from circuits.graph import Edge, Node
from circuits.ground_truth import GroundTruth
from circuits.methods import MethodResult, evaluate


def _head(layer, index):
    return Node("head", layer, index)


HEADS = [_head(layer, index) for layer in range(2) for index in range(2)]
TRUTH = GroundTruth(
    name="path_patching",
    task="ioi",
    nodes={_head(0, 0), _head(1, 1)},
    edges={(_head(0, 0), _head(1, 1), "q")},
)


def test_discrete_sae_pair_auc_is_not_reported_as_an_edge_auc():
    pairs = {frozenset((a, b)): 0.0 for i, a in enumerate(HEADS) for b in HEADS[i + 1 :]}
    pairs[frozenset((_head(0, 0), _head(1, 1)))] = 5.0  # the ground-truth pair ranks first: AUC 1
    edge_method = {h: float(i) for i, h in enumerate([_head(0, 0), _head(1, 1), _head(0, 1), _head(1, 0)][::-1])}
    result = MethodResult(
        "ioi",
        "discrete-sae",
        node_scores=dict.fromkeys(HEADS, 1.0),
        seconds=0.0,
        n_prompts=2,
        pair_scores=pairs,
        alt_head_scores={"edge_method": edge_method},
    )
    out = evaluate(result, TRUTH)
    assert "edge_roc_auc" not in out and "n_truth_edges" not in out and "edge_unit" not in out
    assert out["pair_roc_auc"] == 1.0 and out["n_truth_pairs"] == 1 and "head pair" in out["pair_unit"]
    assert out["edge_method_roc_auc"] == 1.0  # the paper's figure: heads ranked by the edge method


def test_edge_auc_stays_for_methods_that_rank_edges():
    e_true, e_false = Edge(_head(0, 0), _head(1, 1), "q"), Edge(_head(0, 1), _head(1, 0), "k")
    result = MethodResult(
        "ioi",
        "eap",
        node_scores={h: float(h in TRUTH.nodes) for h in HEADS},
        seconds=0.0,
        n_prompts=2,
        edge_scores={e_true: 2.0, e_false: 1.0},
    )
    out = evaluate(result, TRUTH)
    assert out["edge_roc_auc"] == 1.0 and out["n_truth_edges"] == 1 and "pair_roc_auc" not in out
