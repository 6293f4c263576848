"""The trainer on random tensors: it learns, resumes exactly, and keeps its files sound."""

from __future__ import annotations

import json
import math

import pytest
import torch
from trainer_streams import B, D, F, cfg, members, stream

from sae.architectures import sae_class
from sae.errors import SaelabError
from sae.trainer import Member, Trainer, TrainerConfig, lr_factor


def test_every_family_learns(tmp_path):
    ms = members()
    Trainer(ms, cfg(), tmp_path, progress=False).fit(lambda skip: stream(skip), 40)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    first, last = lines[0]["saes"], lines[-1]["saes"]
    for m in ms:
        assert last[m.name]["fvu"] < first[m.name]["fvu"], m.name
        if m.sae.cfg.unit_norm_decoder:
            torch.testing.assert_close(m.sae.W_dec.norm(dim=1), torch.ones(F))


def test_interrupted_training_resumes_to_the_same_weights(tmp_path):
    full = members()
    Trainer(full, cfg(), tmp_path / "full", progress=False).fit(lambda skip: stream(skip), 40)

    def dies_at_step_25(skip):
        for i, batch in enumerate(stream(skip)):
            if skip == 0 and i == 25:
                raise KeyboardInterrupt
            yield batch

    with pytest.raises(KeyboardInterrupt):
        Trainer(members(), cfg(), tmp_path / "cut", progress=False).fit(dies_at_step_25, 40)
    state = json.loads((tmp_path / "cut" / "checkpoint" / "state.json").read_text())
    assert state["step"] == 20 and state["rows"] == 20 * B
    resumed = members()
    Trainer(resumed, cfg(), tmp_path / "cut", progress=False).fit(dies_at_step_25, 40)
    for a, b in zip(full, resumed, strict=True):
        for (name, p), (_, q) in zip(a.sae.state_dict().items(), b.sae.state_dict().items(), strict=True):
            assert torch.equal(p, q), (a.name, name)
        assert torch.equal(a.since_fired, b.since_fired)
    steps = [json.loads(line)["step"] for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))  # no duplicated metric lines after the resume


def test_corrupt_checkpoint_is_named_not_loaded(tmp_path):
    Trainer(members(["topk"]), cfg(), tmp_path, progress=False).fit(lambda skip: stream(skip, steps=10), 10)
    tensors = tmp_path / "checkpoint" / "state.safetensors"
    data = bytearray(tensors.read_bytes())
    data[-3] ^= 0xFF
    tensors.write_bytes(bytes(data))
    with pytest.raises(SaelabError, match="checkpoint is corrupt"):
        Trainer(members(["topk"]), cfg(), tmp_path, progress=False).fit(lambda skip: stream(skip, steps=10), 10)


def test_checkpoint_of_another_run_is_refused(tmp_path):
    Trainer(members(["topk"]), cfg(), tmp_path, progress=False).fit(lambda skip: stream(skip, steps=10), 10)
    with pytest.raises(SaelabError, match="different run"):
        Trainer(members(["relu"]), cfg(), tmp_path, progress=False).fit(lambda skip: stream(skip, steps=10), 10)


def test_nan_stops_training_with_a_clear_message_and_keeps_the_checkpoint(tmp_path):
    with pytest.raises(SaelabError, match=r"non-finite activations in the batch at step 15 \(SAE 'topk'\)"):
        Trainer(members(["topk"]), cfg(), tmp_path, progress=False).fit(lambda skip: stream(skip, poison_at=15), 40)
    assert json.loads((tmp_path / "checkpoint" / "state.json").read_text())["step"] == 10


def test_aux_k_fires_only_with_dead_latents(tmp_path):
    m = members(["topk"])
    Trainer(m, cfg(dead_after_tokens=10**9), tmp_path, progress=False).fit(lambda skip: stream(skip, steps=10), 10)
    line = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert line["saes"]["topk"]["loss/aux_k"] == 0 and line["saes"]["topk"]["dead_fraction"] == 0


def test_learning_rate_schedule():
    c = TrainerConfig(warmup_steps=10, decay_fraction=0.2)
    assert lr_factor(0, 100, c) == pytest.approx(0.1)
    assert lr_factor(50, 100, c) == 1.0
    assert lr_factor(90, 100, c) == pytest.approx(0.5)
    from sae.trainer import default_lr

    assert default_lr(TrainerConfig(), 2**14) == pytest.approx(2e-4)
    assert default_lr(TrainerConfig(), 2**16) == pytest.approx(1e-4)


def test_plain_iterators_of_x_or_x_g_pairs_train_and_resume(tmp_path):
    """The documented minimal input: an iterable of ``x`` or ``(x, g)``; a resumed run skips
    the rows it already consumed."""

    def pairs():
        return ((b["x"], b["x.grad"]) for b in stream(0, steps=30))

    def make():
        cls = sae_class("gsae")
        torch.manual_seed(0)
        return [Member.reading("g", cls(cls.config_class(d_in=D, d_sae=F, k=4, beta=1.0)))]

    full = make()
    Trainer(full, cfg(), tmp_path / "full", progress=False).fit(pairs(), 30)
    assert full[0].grad_key == "x.grad"

    def dies(it):
        for i, item in enumerate(it):
            if i == 25:
                raise KeyboardInterrupt
            yield item

    with pytest.raises(KeyboardInterrupt):
        Trainer(make(), cfg(), tmp_path / "cut", progress=False).fit(dies(pairs()), 30)
    resumed = make()
    Trainer(resumed, cfg(), tmp_path / "cut", progress=False).fit(pairs(), 30)
    for p, q in zip(full[0].sae.state_dict().values(), resumed[0].sae.state_dict().values(), strict=True):
        assert torch.equal(p, q)
    plain = [Member.reading("t", sae_class("topk")(sae_class("topk").config_class(d_in=D, d_sae=F, k=4)))]
    Trainer(plain, cfg(), tmp_path / "plain", progress=False).fit((b["x"] for b in stream(0, steps=5)), 5)
    with pytest.raises(SaelabError, match=r"reads 'x.grad', which the batches lack"):
        Trainer(make(), cfg(), tmp_path / "nog", progress=False).fit((b["x"] for b in stream(0, steps=5)), 5)


def test_density_histogram_bins_latents_by_firing_rate():
    from sae.trainer import density_histogram

    counts = torch.tensor([0, 0, 1, 50, 500, 5000, 100_000, 1_000_000])
    # rows = 1e6: densities 0, 0, 1e-6, 5e-5, 5e-4, 5e-3, 0.1, 1
    assert density_histogram(counts, 1_000_000) == [2, 0, 1, 1, 1, 1, 0, 2]


def test_per_sae_learning_rates_and_the_default_law():
    cls = sae_class("topk")
    a = Member.reading("a", cls(cls.config_class(d_in=D, d_sae=2**16 // 64, k=4)))
    b = Member.reading("b", cls(cls.config_class(d_in=D, d_sae=64, k=4)), lr=0.01)
    c = TrainerConfig(base_lr=2e-4)
    assert a.base_lr(c) == pytest.approx(2e-4 / math.sqrt(1024 / 2**14)) and b.base_lr(c) == 0.01


@pytest.mark.parametrize("failure", ["oserror", "safetensors"])
def test_a_full_disk_during_a_save_is_one_line_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch, failure):
    import errno

    import sae.checkpoint

    trainer = Trainer(members(["topk"]), cfg(), tmp_path, progress=False)
    trainer.fit(lambda skip: stream(skip, steps=10), 10)
    before = {p.name: p.read_bytes() for p in (tmp_path / "checkpoint").iterdir()}

    def full_disk(tensors, path):  # half the file reaches the disk, then the device is full
        with open(path, "wb") as f:
            f.write(b"\0" * 1000)
        if failure == "oserror":
            raise OSError(errno.ENOSPC, "No space left on device")
        raise RuntimeError(
            'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'
        )  # safetensors' own wording

    monkeypatch.setattr(sae.checkpoint, "save_file", full_disk)
    with pytest.raises(SaelabError, match=r"no space left on the device while writing .*checkpoint.*intact"):
        sae.checkpoint.save_checkpoint(tmp_path, trainer.state_dict())
    assert {p.name: p.read_bytes() for p in (tmp_path / "checkpoint").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary left behind
    resumed = Trainer(members(["topk"]), cfg(), tmp_path, progress=False)
    resumed.load_state_dict(sae.checkpoint.load_checkpoint(tmp_path))
    assert resumed.step == trainer.step


def test_all_finite_is_exact_when_the_sum_overflows():
    from sae.trainer import all_finite

    big = torch.full((64, 8), 3e38)  # every entry finite, their sum is not
    assert all_finite(big)
    assert all_finite(torch.randn(5, 3))
    for bad in (float("nan"), float("inf"), float("-inf")):
        x = torch.randn(5, 3)
        x[2, 1] = bad
        assert not all_finite(x)
