"""The parity benchmark's bookkeeping: which SAEs get twins, how they are seeded, and how
the verdict is reached, on a hand-made config and hand-made scores."""

from __future__ import annotations

import pytest

from bench.parity import compare, twin_config

CONFIG = {
    "data": {"model": "organism", "n_tokens": 1000},
    "saes": [
        {"hook": "blocks.1.hook_resid_post", "sae": {"architecture": "relu", "d_sae": 64}},
        {"hook": "blocks.1.hook_resid_post", "sae": {"architecture": "topk", "d_sae": 64, "k": 4}},
        {"hook": "blocks.1.hook_mlp_out", "sae": {"architecture": "topk", "d_sae": 64, "k": 4}},
    ],
}


def test_twins_cover_the_sparse_families_with_one_seed_per_pair():
    twins = twin_config(CONFIG, n_tokens=500, heldout_tokens=200, seeds=2)
    got = [(s["name"], s["seed"], s["sae"]["kernel"]) for s in twins["saes"]]
    assert got == [
        ("topk@s1001.sparse", 1001, "sparse"),
        ("topk@s1001.dense", 1001, "dense"),
        ("topk@s1101.sparse", 1101, "sparse"),
        ("topk@s1101.dense", 1101, "dense"),
        ("topk@blocks.1.hook_mlp_out@s1002.sparse", 1002, "sparse"),
        ("topk@blocks.1.hook_mlp_out@s1002.dense", 1002, "dense"),
        ("topk@blocks.1.hook_mlp_out@s1102.sparse", 1102, "sparse"),
        ("topk@blocks.1.hook_mlp_out@s1102.dense", 1102, "dense"),
    ]
    assert twins["data"]["n_tokens"] == 500 and twins["heldout"]["n_tokens"] == 200
    assert CONFIG["data"]["n_tokens"] == 1000  # the input is left alone


def _score(fvu: float, l0: float = 16.0) -> dict:
    return {"architecture": "topk", "fvu": fvu, "l0": l0}


def test_the_verdict_is_on_the_mean_over_seeds_and_the_worst_pair_is_reported():
    summary = {
        "saes": {
            "topk@s1001.sparse": _score(0.0317),
            "topk@s1001.dense": _score(0.0321),
            "topk@s1101.sparse": _score(0.0315),
            "topk@s1101.dense": _score(0.0315),
            "mc@s1003.sparse": _score(0.050),
            "mc@s1003.dense": _score(0.045, 15.0),
        }
    }
    rows = {r["sae"]: r for r in compare(summary)}
    topk = rows["topk"]
    assert topk["seeds"] == 2
    assert topk["fvu_sparse"] == pytest.approx(0.0316) and topk["fvu_dense"] == pytest.approx(0.0318)
    assert topk["fvu_ratio"] == pytest.approx(0.0316 / 0.0318)
    assert topk["within_1pct"]  # 0.63% on the mean, although seed 1001 alone is 1.25% apart
    assert topk["worst_pair_ratio"] == pytest.approx(0.0317 / 0.0321)
    assert topk["fvu_ratio_by_seed"] == {"1001": pytest.approx(0.0317 / 0.0321), "1101": pytest.approx(1.0)}
    assert not rows["mc"]["within_1pct"] and rows["mc"]["l0_dense"] == 15.0
