"""``saelab bench evals --json`` on the tiny run: seconds per SAEBench eval and in total."""

from __future__ import annotations

import json

from saelab.cli import main

SUITE = """\
data: {n_tokens: 2048, lm_batch_size: 32}
mean_ablation: {n_tokens: 1024}
attention: {enabled: false}
saebench:
  evals: [core, sparse_probing, absorption]
  sparse_probing: {datasets: [category], k_values: [1], contexts: 2}
  absorption: {contexts: 4}
"""


def test_bench_evals_times_each_eval(tiny_run, tmp_path, monkeypatch, capsys):
    import bench.commands

    monkeypatch.setattr(bench.commands, "RESULTS_DIR", tmp_path / "results")  # not the repo's bench/results
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE)
    argv = ["bench", "evals", "--json", "--run-dir", str(tiny_run), "--suite", str(suite), "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["evals"] == ["core", "sparse_probing", "absorption"] and row["trained"] is None
    assert row["saes"] == 3 and set(row["seconds"]) == {"heldout_pass", "core", "sparse_probing", "absorption"}
    assert all(v > 0 for v in row["seconds"].values())
    # the parts are timed inside the whole: their sum cannot exceed the suite's total
    assert sum(row["seconds"].values()) <= row["total_seconds"] + 0.1
    assert row["within_bar"] == (row["total_seconds"] <= 900)
    saved = json.loads((tmp_path / "results" / "evals.json").read_text())
    assert saved["name"] == "evals" and saved["result"]["seconds"] == row["seconds"]
    results = json.loads((tmp_path / "out" / "suite" / "results.json").read_text())
    assert set(results["saebench"]) == {"core", "sparse_probing", "absorption"}


def test_bench_evals_refuses_a_directory_without_saes(tmp_path, capsys, monkeypatch):
    import bench.commands

    monkeypatch.setattr(bench.commands, "RESULTS_DIR", tmp_path / "results")
    (tmp_path / "empty").mkdir()
    assert main(["bench", "evals", "--run-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "empty" in err[0]
