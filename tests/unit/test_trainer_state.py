"""The trainer's state: ``state_dict()`` holds everything the next step depends on,
``load_state_dict()`` continues from it exactly, and a checkpoint stores it unchanged."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from trainer_streams import B, cfg, members, stream

from sae.checkpoint import load_checkpoint, save_checkpoint
from sae.errors import SaelabError
from sae.trainer import Trainer

STEPS = 12


def _trained(run_dir, steps: int) -> tuple[Trainer, list]:
    batches = list(stream(0, steps=STEPS))
    trainer = Trainer(members(), cfg(), run_dir, progress=False)
    trainer.initialise(batches[0])
    for batch in batches[:steps]:
        trainer.train_step(batch, STEPS)
    return trainer, batches


def test_a_loaded_state_continues_exactly_like_the_trainer_it_came_from(tmp_path):
    """Every family (the variational one samples from the RNG, which the state carries)."""
    trainer, batches = _trained(tmp_path / "a", 6)
    state = copy.deepcopy(trainer.state_dict())  # the tensors are live: copy before stepping on
    for batch in batches[6:]:
        trainer.train_step(batch, STEPS)
    fresh = Trainer(members(), cfg(), tmp_path / "b", progress=False)
    fresh.load_state_dict(state)
    assert (fresh.step, fresh.rows) == (6, 6 * B)
    for batch in batches[6:]:
        fresh.train_step(batch, STEPS)
    for a, b in zip(trainer.members, fresh.members, strict=True):
        for (name, p), (_, q) in zip(a.sae.state_dict().items(), b.sae.state_dict().items(), strict=True):
            assert torch.equal(p, q), (a.name, name)
        assert torch.equal(a.since_fired, b.since_fired)
        assert torch.equal(a.window_fires, b.window_fires)


def test_a_checkpoint_stores_the_state_unchanged(tmp_path):
    trainer, _ = _trained(tmp_path, 3)
    state = trainer.state_dict()
    stored = load_checkpoint(save_checkpoint(tmp_path, state).parent)
    as_json = json.loads(json.dumps({k: v for k, v in state.items() if k != "tensors"}))  # tuples come back as lists
    assert {k: v for k, v in stored.items() if k != "tensors"} == as_json
    assert stored["tensors"].keys() == state["tensors"].keys()
    for key, tensor in state["tensors"].items():
        assert torch.equal(stored["tensors"][key], tensor.cpu()), key


def test_no_checkpoint_is_none(tmp_path):
    assert load_checkpoint(tmp_path) is None


def test_a_state_of_another_run_or_process_count_is_refused(tmp_path):
    state = _trained(tmp_path, 2)[0].state_dict()
    other = Trainer(members(["topk"]), cfg(), tmp_path, progress=False)
    with pytest.raises(SaelabError, match="holds a checkpoint of a different run"):
        other.load_state_dict(state)
    same = Trainer(members(), cfg(lr=1e-3), tmp_path, progress=False)
    with pytest.raises(SaelabError, match="different run"):  # another learning rate computes another run
        same.load_state_dict(state)
    with pytest.raises(SaelabError, match="checkpointed with 2 processes; resume it with the same number"):
        Trainer(members(), cfg(), tmp_path, progress=False).load_state_dict({**state, "world_size": 2})
    resumable = Trainer(members(), cfg(log_every=3, checkpoint_every=7), tmp_path, progress=False)
    resumable.load_state_dict(state)  # settings that do not change what is computed may change
    assert resumable.step == 2
