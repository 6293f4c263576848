"""Several ranks compute what one process computes on the whole batch (thread-ranks; fast).

The same code runs under torchrun (tests/test_ddp.py checks that end to end with gloo);
here the ranks are threads of one process, so the equivalences are cheap to check for
every rule that couples the rows of a batch: mutual choice, feature choice (selection,
thresholds, demand), AuxK's normalisation, b_dec's initialisation and gradient averaging.
"""

from __future__ import annotations

import json
import threading

import pytest
import torch
from thread_ranks import run_ranks

from sae.architectures import sae_class
from sae.architectures.feature_choice import demand
from sae.architectures.mutual_choice import batch_topk_indices, global_topk_indices
from sae.trainer import Member, Trainer, TrainerConfig

D, F, K = 16, 64, 4
INIT = threading.Lock()


def halves(t: torch.Tensor, world: int, rank: int) -> torch.Tensor:
    b = t.shape[0] // world
    return t[rank * b : (rank + 1) * b]


def test_batch_topk_over_ranks_is_the_global_top_k():
    torch.manual_seed(0)
    pre = torch.randn(24, F)
    pre[3] += 3.0  # one rank holds far more than its share of the winners
    expected = set(global_topk_indices(pre, K * 24).tolist())

    def rank_part(c):
        mine = halves(pre, 3, c.rank)
        flat = batch_topk_indices(mine, K * 8, c)
        return {int(i) + c.rank * 8 * F for i in flat}

    got = set().union(*run_ranks(3, rank_part))
    assert got == expected


def test_demand_over_ranks_equals_one_process():
    torch.manual_seed(1)
    pre = torch.randn(32, F)
    for n_rows in (32, 20, 5):  # all rows; rows spanning two of four ranks; rows within rank 0
        expected = demand(pre, K, n_rows)
        got = run_ranks(4, lambda c, n=n_rows: demand(halves(pre, 4, c.rank), K, n, c))
        for g in got:
            torch.testing.assert_close(g, expected)


@pytest.mark.parametrize("arch", ["mutual_choice", "feature_choice"])
def test_batch_level_selection_and_statistics_over_ranks(arch):
    cls = sae_class(arch)
    torch.manual_seed(2)
    x = torch.randn(32, D)

    def make():
        with INIT:
            torch.manual_seed(0)
            return cls(cls.config_class(d_in=D, d_sae=F, k=K, threshold_decay=0.5)).train()

    single = make()
    codes = single(x).codes.detach()

    def rank_part(c):
        sae = make()
        sae.collective = c
        return sae(halves(x, 2, c.rank)).codes.detach(), sae.state_dict()

    (c0, s0), (c1, s1) = run_ranks(2, rank_part)
    torch.testing.assert_close(torch.cat([c0, c1]), codes)
    for state in (s0, s1):  # thresholds, densities, ranks: the same on every rank as in one process
        for name, value in single.state_dict().items():
            torch.testing.assert_close(state[name], value)


def train(arch: str, world: int, tmp_path, steps: int = 6, **sae_kw) -> dict:
    """Weights after ``steps`` steps on the same global batches, split over ``world`` ranks."""
    cls = sae_class(arch)
    torch.manual_seed(3)
    data = [torch.randn(48, D) * 2 + 1 for _ in range(steps)]
    grads = [torch.randn(48, D) for _ in range(steps)]
    kw = {} if arch == "relu" else {"k": K}
    cfg = TrainerConfig(
        batch_size=48,
        lr=3e-3,
        warmup_steps=2,
        dead_after_tokens=60,
        log_every=2,
        checkpoint_every=0,
        wandb_project=None,
    )

    def job(c):
        with INIT:  # the global RNG is shared by the thread-ranks: draw the initial weights one rank at a time
            torch.manual_seed(0)
            sae = cls(cls.config_class(d_in=D, d_sae=F, **kw, **sae_kw))
        with torch.no_grad():
            sae.b_enc[: F // 4] = -4.0  # a quarter of the latents rarely win: dead, and AuxK trains them
        trainer = Trainer([Member.reading(arch, sae)], cfg, tmp_path / f"{arch}_{world}", dist=c, progress=False)

        def batches(skip_rows):
            for x, g in list(zip(data, grads, strict=True))[skip_rows // 48 :]:
                yield {"x": halves(x, c.world_size, c.rank), "x.grad": halves(g, c.world_size, c.rank)}

        trainer.fit(batches, total_steps=steps)
        aux = [v for k, v in trainer.members[0].last.items() if k.startswith("loss/aux")]
        assert arch == "relu" or (aux and aux[0] > 0)
        return {k: v.clone() for k, v in sae.state_dict().items()}, trainer.members[0].since_fired.clone()

    return run_ranks(world, job)


@pytest.mark.parametrize("arch", ["topk", "relu", "mutual_choice", "feature_choice", "gsae"])
def test_two_ranks_reach_the_weights_of_one_process(arch, tmp_path):
    kw = {"density_decay": 0.3, "rerank_every": 2} if arch == "feature_choice" else {}  # aux_zipf engages early
    ((one, fired_one),) = train(arch, 1, tmp_path, **kw)
    (r0, fired0), (r1, fired1) = train(arch, 2, tmp_path, **kw)
    assert torch.equal(fired0, fired_one) and torch.equal(fired1, fired_one)  # the same latents dead (AuxK on)
    for name, value in one.items():
        torch.testing.assert_close(r0[name], value, atol=1e-5, rtol=1e-5, msg=lambda m, name=name: f"{name}: {m}")
        torch.testing.assert_close(r1[name], r0[name], atol=0, rtol=0)  # ranks never drift apart


class Interrupted(Exception):
    pass


def test_two_ranks_resume_from_a_checkpoint_to_the_same_weights(tmp_path):
    cls = sae_class("mutual_choice")
    torch.manual_seed(5)
    data = [torch.randn(32, D) for _ in range(8)]
    cfg = TrainerConfig(batch_size=32, lr=3e-3, warmup_steps=2, checkpoint_every=3, log_every=2, wandb_project=None)

    def job(run_dir, stop_after=None):
        def body(c):
            with INIT:
                torch.manual_seed(0)
                sae = cls(cls.config_class(d_in=D, d_sae=F, k=K))
            trainer = Trainer([Member.reading("mc", sae)], cfg, run_dir, dist=c, progress=False)

            def batches(skip_rows):
                for i, x in enumerate(data[skip_rows // 32 :], start=skip_rows // 32):
                    if stop_after is not None and i == stop_after:
                        raise Interrupted  # every rank at the same step, as a killed job stops
                    yield {"x": halves(x, c.world_size, c.rank)}

            trainer.fit(batches, total_steps=len(data))
            return {k: v.clone() for k, v in sae.state_dict().items()}

        return body

    whole = run_ranks(2, job(tmp_path / "whole"))
    with pytest.raises(Interrupted):
        run_ranks(2, job(tmp_path / "cut", stop_after=5))  # the checkpoint at step 3 survives
    resumed = run_ranks(2, job(tmp_path / "cut"))
    for name, value in whole[0].items():
        torch.testing.assert_close(resumed[0][name], value, atol=0, rtol=0)
        torch.testing.assert_close(resumed[1][name], value, atol=0, rtol=0)


def test_a_cache_written_by_two_ranks_is_the_cache_of_one_process(tmp_path):
    from sae.cache import write_cache
    from sae.model import load_model
    from sae.store import StoreConfig

    spec = {
        "hooks": ["blocks.0.hook_resid_post"],
        "n_tokens": 64 * 16 * 5,
        "context_size": 64,
        "lm_batch_size": 16,
        "shard_batches": 2,
    }
    one = write_cache(StoreConfig(**spec, cache_dir=str(tmp_path / "one")), progress=False)
    models = [load_model("organism") for _ in range(3)]  # hooks are per model object: one per thread-rank
    run_ranks(
        3,
        lambda c: write_cache(
            StoreConfig(**spec, cache_dir=str(tmp_path / "three")), *models[c.rank], progress=False, collective=c
        ),
    )
    three = json.loads((tmp_path / "three" / "manifest.json").read_text())
    assert three["complete"] and not list((tmp_path / "three").glob("progress.rank*.json"))
    assert [s["index"] for s in three["shards"]] == [0, 1, 2]  # 5 LM batches: shards of 2, 2 and 1
    for key in ("rows", "hooks", "spec"):
        assert three[key] == one[key]
    assert [s["files"] for s in three["shards"]] == [s["files"] for s in one["shards"]]  # same checksums
