"""``sae.run_dir.find_saes``: the one finder of a run's SAEs (explorer, evals, CLI)."""

from __future__ import annotations

import json

import pytest
from bad_files import saved_sae

from sae.errors import SaelabError
from sae.run_dir import find_saes


@pytest.fixture
def run(tmp_path):
    """A multi-SAE run as ``saelab train`` leaves it, plus folders that are not SAEs of it."""
    root = tmp_path / "sweep"
    saved_sae(root / "topk")
    saved_sae(root / "wide", d_sae=96)
    saved_sae(root / "grid" / "l1_0.1")  # nested one level deeper
    (root / "run_config.json").write_text("{}")
    saved_sae(root / "checkpoint" / "old")  # trainer state, not an SAE of the run
    saved_sae(root / "topk" / "dashboard" / "copy")
    saved_sae(root / ".trash" / "gone")
    return root


def test_finds_every_sae_below_and_nothing_else(run):
    found = find_saes(run)
    assert [e.path.relative_to(run).as_posix() for e in found] == ["grid/l1_0.1", "topk", "wide"]
    by_name = {e.name: e for e in found}
    assert set(by_name) == {"grid/l1_0.1", "topk", "wide"}
    assert by_name["wide"].d_sae == 96 and by_name["wide"].architecture == "topk"
    assert by_name["topk"].model == "organism" and by_name["topk"].hook.endswith("hook_resid_post")
    assert all(e.run_dir == run for e in found)
    assert [e.id for e in found] == ["sweep/grid/l1_0.1", "sweep/topk", "sweep/wide"]
    assert by_name["topk"].dashboard == run / "topk" / "dashboard"


def test_one_sae_of_a_run_belongs_to_that_run(run, tmp_path):
    (entry,) = find_saes(run / "topk")
    assert entry.path == run / "topk" and entry.run_dir == run and entry.id == "sweep/topk"
    assert entry.name == "topk"
    single = saved_sae(tmp_path / "single")
    (single / "run_config.json").write_text("{}")
    (entry,) = find_saes(single)
    assert entry.run_dir == single and entry.id == "single" and entry.name == "single"


def test_the_saved_name_wins_over_the_folder(tmp_path):
    path = saved_sae(tmp_path / "run" / "folder")
    cfg = json.loads((path / "cfg.json").read_text())
    cfg["saelab"]["name"] = "topk|seed=3"
    (path / "cfg.json").write_text(json.dumps(cfg))
    assert [e.name for e in find_saes(tmp_path / "run")] == ["topk|seed=3"]


def test_a_broken_sae_is_refused_by_commands_and_left_out_by_the_explorer(run):
    (run / "wide" / "cfg.json").write_text("{not json")
    with pytest.raises(SaelabError, match=r"wide/cfg.json: not valid JSON"):
        find_saes(run)
    assert [e.name for e in find_saes(run, strict=False)] == ["grid/l1_0.1", "topk"]


def test_nothing_found_is_one_line(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("milk")
    with pytest.raises(SaelabError, match=r"notes: holds no saved SAE \(no cfg.json at or below it\)"):
        find_saes(tmp_path / "notes")
    with pytest.raises(SaelabError, match="no such run directory"):
        find_saes(tmp_path / "nope")
    with pytest.raises(SaelabError, match="not a directory"):
        find_saes(tmp_path / "notes" / "todo.txt")
    only = saved_sae(tmp_path / "bad" / "sae")
    (only / "cfg.json").write_text("[]")
    with pytest.raises(SaelabError, match="not a JSON object"):  # the reason, not "no SAE"
        find_saes(tmp_path / "bad", strict=False)
