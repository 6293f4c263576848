"""Slow tier of unit/test_trainer.py: the tests marked slow."""

from __future__ import annotations

import pytest
from trainer_streams import cfg, members, stream

from sae.trainer import Trainer


@pytest.mark.slow
def test_wandb_logs_offline_by_default(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("NETRC", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no stored `wandb login` (~/.netrc) either
    Trainer(members(["topk"]), cfg(wandb_project="saelab-test"), tmp_path, progress=False).fit(
        lambda skip: stream(skip, steps=6), 6
    )
    # the mode is given to wandb.init, not put in the environment
    assert list((tmp_path / "wandb").glob("offline-run-*")), "no offline wandb run was written"
