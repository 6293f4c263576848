"""A second organism wired in everywhere, tested with a tiny stand-in (issue 18).

The real organism-b takes ~an hour to train; the plumbing (a provider name reaching the
CLI, its own text, its own ground truth, the bench and the results doc) is the same for
any provider that ships circuits. ``tiny`` registers one, ``organism-tiny``: a 2-layer
model trained for 30 steps by the organism's own script in another world (world_seed
4321), with a hand-written circuits file and its faithfulness ground truth beside it.
"""

from __future__ import annotations

import json
from functools import partial

import pytest

from organism.provider import documents
from sae import providers
from sae.providers import Provider

NAME = "organism-tiny"
IOI_NODES = [("1.0", "name_mover"), ("1.1", "name_mover"), ("0.2", "s_inhibition"), ("0.3", "induction")]
GT_NODES = [("1.2", "direct"), ("mlp1", "direct"), ("0.1", "year_writer")]


def _record(nodes) -> dict:
    out = []
    for node, role in nodes:
        layer, head = (int(node[3:]), None) if node.startswith("mlp") else tuple(int(x) for x in node.split("."))
        out.append({"node": node, "layer": layer, "head": head, "role": role, "roles": [role]})
    return {"nodes": out, "edges": [{"sender": nodes[-1][0], "receiver": nodes[0][0], "input": "resid"}]}


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """The stand-in's weights, circuits and ground-truth directory (trained once, seconds)."""
    from organism.corpus import CorpusConfig
    from organism.train import OrganismConfig, train

    root = tmp_path_factory.mktemp("organism_tiny")
    cfg = OrganismConfig(
        seed=1,
        n_layers=2,
        n_heads=4,
        d_model=32,
        n_ctx=64,
        seq_len=32,
        batch_size=8,
        steps=30,
        warmup_steps=5,
        corpus=CorpusConfig(world_seed=4321),
    )
    train(cfg, root / "weights", progress=False)
    circuits = {"schema_version": 1, "ioi": _record(IOI_NODES), "greater_than": _record(GT_NODES)}
    (root / "circuits.json").write_text(json.dumps(circuits))
    (root / "ground_truth").mkdir()
    faithful = {"ioi": _record(IOI_NODES[:2]), "greater_than": _record(GT_NODES[:1])}
    (root / "ground_truth" / f"{NAME}_faithfulness.json").write_text(json.dumps(faithful))
    return root


@pytest.fixture
def tiny(tiny_dir, monkeypatch):
    """``organism-tiny`` registered for one test, its faithfulness file where the ground
    truths of ``circuits.ground_truth`` are looked up."""
    from circuits import ground_truth

    provider = Provider(
        name=NAME,
        model_dir=tiny_dir / "weights",
        documents=partial(documents, model_dir=tiny_dir / "weights"),
        files={"circuits": tiny_dir / "circuits.json"},
        rebuild="train the tiny one",
    )
    monkeypatch.setitem(providers._REGISTRY, NAME, provider)
    monkeypatch.setattr(ground_truth, "HERE", tiny_dir / "ground_truth")
    return provider


def _one_line(capsys, argv, code):
    from saelab.cli import main

    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


# ---------------------------------------------------------------- the provider itself


def test_organism_b_is_registered_as_a_provider_with_its_own_files():
    import saelab  # noqa: F401  (the composition root registers both organisms)
    from organism.provider import CIRCUITS_B, WEIGHTS_B

    b = providers.find("organism-b")
    assert b is not None and b.model_dir == WEIGHTS_B and b.files["circuits"] == CIRCUITS_B
    assert not b.default and providers.default_name() == "organism"
    assert b.rebuild == "saelab organism train --config configs/organism_b.yaml --out organism/weights_b"


def test_a_provider_text_is_the_corpus_its_training_json_names(tiny):
    """The stand-in was trained in world 4321: its text speaks of that world, and the first
    organism's text stays the default corpus, bit for bit."""
    import itertools

    from organism.corpus import CorpusConfig
    from organism.corpus import documents as corpus_documents
    from sae.text import TextSource, iter_texts

    def first(stream, n=200):
        return list(itertools.islice(stream, n))

    ours = first(iter_texts(TextSource(kind=NAME), seed=3))
    assert ours == first(corpus_documents(3, CorpusConfig(world_seed=4321)))
    assert ours != first(corpus_documents(3))  # other facts (who lives where)
    assert first(iter_texts(TextSource(kind="organism"), seed=3)) == first(corpus_documents(3))


def test_a_training_json_without_a_corpus_is_one_line(tmp_path):
    from organism.provider import corpus_config
    from sae.errors import SaelabError

    with pytest.raises(SaelabError, match=r"training\.json is missing"):
        corpus_config(tmp_path)
    (tmp_path / "training.json").write_text('{"config": {}}')
    with pytest.raises(SaelabError, match=r"no readable config\.corpus"):
        corpus_config(tmp_path)


# ---------------------------------------------------------------- organism and circuit commands


def test_organism_eval_takes_the_model(tiny, capsys):
    from saelab.cli import main

    assert main(["organism", "eval", "--model", NAME, "--json", "--n-prompts", "20"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_layers"] == 2 and out["n_heads_total"] == 8 and out["train_tokens"] == 30 * 8 * 32
    assert 0 <= out["ioi_accuracy"] <= 1


def test_organism_circuits_freeze_writes_the_provider_file(tiny, tiny_dir, monkeypatch, capsys):
    """``--freeze`` writes what the path-patching search returns to the provider's circuits
    file (the search itself needs a model that solves IOI: tested on the organisms)."""
    import organism.find_circuits
    from saelab.cli import main

    def fake(model, tokenizer):
        return {"model": {"n_layers": model.cfg.n_layers, "n_heads": model.cfg.n_heads}, "ioi": {}, "gt": {}}

    monkeypatch.setattr(organism.find_circuits, "find_circuits", fake)
    frozen = tiny_dir / "frozen_copy.json"
    monkeypatch.setitem(tiny.files, "circuits", frozen)  # leave the fixture's own file alone
    assert main(["organism", "circuits", "--model", NAME, "--freeze"]) == 0
    assert json.loads(frozen.read_text())["model"] == {"n_layers": 2, "n_heads": 4}
    capsys.readouterr()
    err = _one_line(capsys, ["organism", "circuits", "--model", str(tiny_dir / "weights"), "--freeze"], 1)
    assert "is not a model provider with a circuits file" in err


def test_circuit_scores_against_the_models_own_ground_truths(tiny, capsys):
    from circuits.ground_truth import truth_model_for
    from saelab.cli import main

    assert truth_model_for(NAME, 2, 4) == NAME and truth_model_for("organism-b", 6, 8) == "organism-b"
    argv = ["circuit", "ioi", "--model", NAME, "--method", "mean-diff", "--n-prompts", "8", "--json", "--quiet"]
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["model"] == NAME and doc["ground_truth"] == "path_patching"
    assert set(doc["by_ground_truth"]) == {"path_patching", "faithfulness"}
    assert doc["ground_truths"]["path_patching"]["heads"] == sorted(n for n, _ in IOI_NODES)
    assert doc["ground_truths"]["faithfulness"]["heads"] == ["1.0", "1.1"]
    # named explicitly, the same; an unknown one is one line, exit 2
    assert main([*argv, "--ground-truth-model", NAME]) == 0
    assert json.loads(capsys.readouterr().out)["by_ground_truth"] == doc["by_ground_truth"]
    err = _one_line(capsys, [*argv, "--ground-truth-model", "organism-z"], 2)
    assert "--ground-truth-model 'organism-z': unknown" in err and NAME in err


def test_a_provider_without_its_frozen_circuits_names_the_command(tiny, tiny_dir, monkeypatch, capsys):
    monkeypatch.setitem(tiny.files, "circuits", tiny_dir / "absent.json")
    argv = ["circuit", "ioi", "--model", NAME, "--method", "mean-diff", "--n-prompts", "8", "--quiet"]
    err = _one_line(capsys, argv, 1)
    assert f"run 'saelab organism circuits --model {NAME} --freeze'" in err


def test_head_centring_is_an_option_of_the_discrete_sae_finder(tiny):
    """``--no-center-heads``: the raw head writes; centred ones differ from them by their
    mean over d_model and nothing else."""
    import torch

    from circuits.discrete_sae import head_outputs
    from circuits.methods import paper_contrast
    from sae.model import load_model

    model, tokenizer = load_model(NAME)
    batch = paper_contrast(tokenizer, "ioi", 6, 0)
    raw = head_outputs(model, batch.tokens, batch.lengths, center=False)
    centred = head_outputs(model, batch.tokens, batch.lengths)
    torch.testing.assert_close(centred, raw - raw.mean(-1, keepdim=True))
    assert raw.mean(-1).abs().max() > 1e-4  # the option changes something here


def test_faithfulness_search_writes_the_models_file(tiny, tiny_dir, capsys):
    from circuits.faithfulness_search import main
    from sae.errors import ConfigError

    target = tiny_dir / "ground_truth" / f"{NAME}_faithfulness.json"
    held = target.read_text()
    try:
        assert main(["--model", NAME, "--n-prompts", "6"]) == 0
        found = json.loads(target.read_text())
        assert {"ioi", "greater_than"} <= set(found) and found["ioi"]["nodes"] and found["n_prompts"] == 6
        assert all(n["layer"] < 2 and n["head"] < 4 for n in found["ioi"]["nodes"])
        assert main(["--model", NAME, "--check"]) == 0  # deterministic: recomputed, the same
    finally:
        target.write_text(held)
    with pytest.raises(ConfigError, match="not a model provider with frozen circuits"):
        main(["--model", "gpt2"])


# ---------------------------------------------------------------- training, the suite, the supervised eval


def test_train_on_the_model_reads_its_own_text(tiny, tmp_path):
    from sae.run_dir import find_saes
    from sae.train_run import RunConfig
    from saelab.cli import main

    run = {
        "data": {"model": NAME, "n_tokens": 4096, "context_size": 32, "lm_batch_size": 32},
        "saes": [{"hook": "blocks.1.hook_resid_post", "sae": {"architecture": "topk", "d_sae": 64, "k": 4}}],
        "trainer": {"batch_size": 256, "wandb_project": None, "checkpoint_every": 0},
        "heldout": None,
    }
    assert RunConfig.model_validate(run).data.source.kind == NAME
    explicit = {**run, "data": {**run["data"], "source": {"kind": "organism"}}}
    assert RunConfig.model_validate(explicit).data.source.kind == "organism"  # named: kept
    (tmp_path / "run.yaml").write_text(json.dumps(run))
    assert main(["train", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    (entry,) = find_saes(tmp_path / "run")
    assert entry.model == NAME
    cfg = json.loads((entry.path / "cfg.json").read_text())
    assert cfg["saelab"]["dataset"]["kind"] == NAME


def test_the_suite_and_the_supervised_eval_follow_the_model(tiny):
    import saelab  # noqa: F401  (registers organism-b where the installed entry points predate it)
    from evals.suite_config import SuiteConfig, eval_source
    from evals.supervised.config import SAEsConfig
    from evals.supervised.full_saes import full_run_config
    from evals.supervised.locations import cross_sections
    from evals.supervised.runner import circuit_name
    from sae.store import DataConfig

    suite = SuiteConfig.model_validate({"synthetic": {"enabled": False}})
    assert eval_source(suite, NAME).kind == NAME and eval_source(suite, "gpt2").kind == "organism"
    pinned = SuiteConfig.model_validate({"data": {"source": {"kind": "organism"}}, "synthetic": {"enabled": False}})
    assert eval_source(pinned, NAME).kind == "organism"
    assert circuit_name(NAME) == NAME and circuit_name("organism-b") == "organism-b"
    heads = {xs.name: xs.heads for xs in cross_sections(NAME)}
    assert heads["name_mover z@END"] == ((1, 0), (1, 1))  # the roles of the tiny circuits file
    assert heads["s_inhibition v@S2"] == ((0, 2),) and heads["induction+duplicate z@S2"] == ((0, 3),)
    data = full_run_config([], SAEsConfig(architectures=("topk",)), NAME, lambda h: 8)["data"]
    assert DataConfig.model_validate(data).source.kind == NAME


# ---------------------------------------------------------------- the bench and the results page


def test_bench_circuits_rows_name_their_model(tiny, tmp_path):
    import argparse

    import saelab  # noqa: F401
    from bench.circuits import add_arguments, default_models, run
    from sae.errors import ConfigError

    assert default_models()[0] == "organism"
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    argv = ["--models", NAME, "--methods", "mean-diff", "--n-prompts", "8", "--quiet", "--out-dir", str(tmp_path)]
    rows = run(parser.parse_args(argv))
    assert {(r["model"], r["task"], r["ground_truth"]) for r in rows} == {
        (NAME, t, g) for t in ("ioi", "greater-than") for g in ("path_patching", "faithfulness")
    }
    assert len(list(tmp_path.glob(f"circuit_{NAME}_*.json"))) == 2 and (tmp_path / "report.html").is_file()
    with pytest.raises(ConfigError, match="--models 'gpt2': give distinct model providers"):
        run(parser.parse_args(["--models", "gpt2"]))
    with pytest.raises(ConfigError, match="--resume needs --out-dir"):
        run(parser.parse_args(["--models", NAME, "--resume"]))


def test_bench_circuits_resume_reuses_only_documents_made_with_the_same_settings(tiny, tmp_path, monkeypatch):
    import argparse

    import circuits.methods
    import saelab  # noqa: F401
    from bench.circuits import add_arguments, run

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    argv = ["--models", NAME, "--methods", "mean-diff", "--tasks", "ioi", "--out-dir", str(tmp_path), "--quiet"]
    first = run(parser.parse_args([*argv, "--n-prompts", "8"]))
    calls = []
    real = circuits.methods.run_method
    monkeypatch.setattr(circuits.methods, "run_method", lambda *a, **k: calls.append(a[3]) or real(*a, **k))
    again = run(parser.parse_args([*argv, "--n-prompts", "8", "--resume"]))
    assert calls == [] and [{**r, "reused": False} for r in again] == first  # progress bars on or off: the same
    assert all(r["reused"] for r in again) and not any(r["reused"] for r in first)
    (tmp_path / f"circuit_{NAME}_ioi_mean-diff.json").write_text("{not json")
    run(parser.parse_args([*argv, "--n-prompts", "8", "--resume"]))
    assert calls == ["mean-diff"]  # a damaged document is run again, never trusted
    other = run(parser.parse_args([*argv, "--n-prompts", "10", "--resume"]))
    assert calls == ["mean-diff"] * 2 and other[0]["n_prompts"] == 10
