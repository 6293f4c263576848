"""The SAEBench hub path, offline: SAEBench's datasets as local files in the hub's formats, a random GPT-2-shaped
model saved to a directory (the organism tokenizer, so the texts are made of words it knows), a tiny SAE trained
on it, and ``saelab eval saebench`` with HF_HUB_OFFLINE=1."""

from __future__ import annotations

import contextlib
import io
import json
import random
import shutil

import pandas as pd
import pytest
import torch

from evals.saebench import hub_datasets
from sae.errors import SaelabError

#: bias_in_bios professions (class_set1's five and the SCR pair professor/nurse), each written in one world category
PROFESSION_WORDS = {0: "city", 1: "food", 2: "color", 6: "animal", 9: "month", 21: "day", 13: "number"}
LANGUAGE_WORDS = {"C": "city", "Python": "food", "HTML": "color", "Java": "animal", "PHP": "month"}
TRAIN, TEST, CTX = 16, 8, 32


def _words(category: str) -> list[str]:
    from evals.saebench.concepts import world_categories

    return list(world_categories()[category])


def write_datasets(root, rng: random.Random) -> None:
    """Tiny copies of SAEBench's datasets, with the hub's columns, under ``root/<hub name>/``."""
    from circuits.tasks.vocabulary import FEMALE_NAMES, MALE_NAMES
    from evals.saebench.concepts import contexts

    for split, n in (("train", 10), ("test", 6)):
        rows = []
        for prof, cat in PROFESSION_WORDS.items():
            for gender, names in ((0, MALE_NAMES), (1, FEMALE_NAMES)):
                for _ in range(n):
                    text = rng.choice(names) + " " + " ".join(rng.choices(_words(cat), k=12))
                    rows.append({"hard_text": text, "profession": prof, "gender": gender})
        path = root / "LabHC" / "bias_in_bios" / f"{split}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_parquet(path)
        # amazon reviews for SCR: category Books (24) / CDs_and_Vinyl (26) in words, the rating in a name's gender
        reviews = [
            {"text": rng.choice(names) + " " + " ".join(rng.choices(_words(cat), k=12)), "category": c, "rating": r}
            for c, cat in ((24, "job"), (26, "food"))
            for r, names in ((1.0, MALE_NAMES), (5.0, FEMALE_NAMES))
            for _ in range(n)
        ]
        path = root / "canrager" / "amazon_reviews_mcauley_1and5" / f"{split}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(reviews).to_parquet(path)
        # ag_news: labels independent of the words (a probe must stay near chance)
        every = [w for c in ("city", "food", "color", "animal") for w in _words(c)]
        news = [{"text": " ".join(rng.choices(every, k=12)), "label": i % 4} for i in range(4 * n)]
        path = root / "fancyzhx" / "ag_news" / f"{split}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in news))
    code = []
    for lang, cat in LANGUAGE_WORDS.items():
        for _ in range(14):  # > n_train + n_test per language
            code.append({"code": " ".join(rng.choices(_words(cat), k=120)), "language": lang})
    rng.shuffle(code)
    path = root / "codeparrot" / "github-code" / "train.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in code))
    for repo, seed in (("Skylion007/openwebtext", 1), ("monology/pile-uncopyrighted", 2)):
        sentences = contexts(600, seed)
        docs = [{"text": " ".join(sentences[i : i + 6])} for i in range(0, 600, 6)]
        path = root / repo / "train.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(d) + "\n" for d in docs))


def suite(data_dir, evals: list[str], **hub) -> dict:
    return {
        "data": {"n_tokens": 512, "lm_batch_size": 16},
        "mean_ablation": {"n_tokens": 256},
        "attention": {"enabled": False},
        "saebench": {
            "evals": evals,
            "source": "hub",
            "hub": {
                "data_dir": str(data_dir),
                "train_size": TRAIN,
                "test_size": TEST,
                "context_length": CTX,
                "sparse_probing_datasets": [
                    "LabHC/bias_in_bios_class_set1",
                    "fancyzhx/ag_news",
                    "codeparrot/github-code",
                ],
                "tpp_datasets": ["LabHC/bias_in_bios_class_set1"],
                "scr_pairs": {
                    "LabHC/bias_in_bios_class_set1": [["professor", "nurse"]],
                    "canrager/amazon_reviews_mcauley_1and5": [["Books", "CDs_and_Vinyl"]],
                },
                "absorption_max_words": 150,
                "absorption_min_letters": 3,
                **hub,
            },
            "sparse_probing": {"k_values": [1, 5]},
            "tpp": {"n_values": [2, 5]},
            "scr": {"n_values": [2, 5]},
            "autointerp": {"n_latents": 2, "n_tokens": 2048, "min_examples": 3, "n_non_activating": 5},
        },
    }


@pytest.fixture(scope="session")
def hub_setup(tmp_path_factory, organism_tokenizer):
    """(root, model dir, data dir, run dir): the model, the local datasets and a trained tiny SAE."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from evals.saebench.hub_concepts import alpha_words
    from sae.train_run import RunConfig, train

    root = tmp_path_factory.mktemp("hub")
    tok = organism_tokenizer
    model_dir = root / "gpt2-tiny"
    torch.manual_seed(0)
    cfg = GPT2Config(
        n_layer=2,
        n_head=2,
        n_embd=64,
        n_positions=128,
        vocab_size=len(tok),
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = GPT2LMHeadModel(cfg)
    with torch.no_grad():  # plant each alphabetic token's first letter in its embedding (absorption's concept)
        for word, i in alpha_words(tok).items():
            model.transformer.wte.weight[i, ord(word.strip()[0].lower()) - ord("a")] += 0.5
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    data = root / "data"
    write_datasets(data, random.Random(0))
    run = {
        "data": {
            "model": str(model_dir),
            "source": {"kind": "local", "path": str(data / "Skylion007" / "openwebtext")},
            "n_tokens": 2048,
            "context_size": 32,
            "lm_batch_size": 32,
        },
        "saes": [
            {"name": "topk", "hook": "blocks.1.hook_resid_post", "sae": {"architecture": "topk", "d_sae": 96, "k": 8}}
        ],
        "trainer": {"batch_size": 128, "wandb_project": None, "checkpoint_every": 0},
        "heldout": None,
    }
    train(RunConfig.model_validate(run), root / "run", progress=False)
    return root, model_dir, data, root / "run"


@pytest.fixture(scope="session")
def hub_eval(hub_setup, tmp_path_factory):
    """``saelab eval saebench`` on the hub path, offline, every eval (RAVEL skipped), with controls: (out, stderr)."""
    from saelab.cli import main

    root, _model, data, run = hub_setup
    out = tmp_path_factory.mktemp("hub_out")
    evals = ["core", "sparse_probing", "absorption", "scr", "tpp", "autointerp"]
    (root / "suite.yaml").write_text(json.dumps(suite(data, evals)))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        mp.setenv("HF_DATASETS_CACHE", str(root / "hf_cache"))
        args = ["eval", "saebench", str(run), "--suite", str(root / "suite.yaml"), "--out", str(out), "--quiet"]
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            assert main([*args, "--evals", ",".join([*evals, "ravel"])]) == 0
    return out, err.getvalue()


def _doc(out, type_id: str) -> dict:
    (path,) = (out / "saebench" / type_id).glob("*_eval_results.json")
    return json.loads(path.read_text())


def test_pooled_probing_on_planted_concepts(hub_eval):
    doc = _doc(hub_eval[0], "sparse_probing")
    assert doc["eval_config"]["dataset_names"][0] == "LabHC/bias_in_bios_class_set1"
    assert doc["eval_config"]["context_length"] == CTX and doc["eval_config"]["probe_train_set_size"] == TRAIN
    by_name = {d["dataset_name"]: d for d in doc["eval_result_details"]}
    # professions and languages are written in disjoint word sets: the mean-pooled residual separates them
    assert by_name["LabHC/bias_in_bios_class_set1"]["llm_test_accuracy"] >= 0.9
    assert by_name["codeparrot/github-code"]["llm_test_accuracy"] >= 0.9
    assert by_name["LabHC/bias_in_bios_class_set1"]["classes"] == ["0", "1", "2", "6", "9"]
    # ag_news' labels were drawn independently of its words: no probe can beat chance by much
    assert by_name["fancyzhx/ag_news"]["llm_test_accuracy"] <= 0.8
    m = doc["eval_result_metrics"]
    assert set(m["sae"]) == {"sae_test_accuracy", "sae_top_1_test_accuracy", "sae_top_5_test_accuracy"}


def test_every_hub_eval_writes_saebench_json_and_summary(hub_eval):
    hub_eval, stderr = hub_eval
    # RAVEL is not run on the hub path: one line says so, nothing is written for it
    assert [ln for ln in stderr.splitlines() if ln.startswith("ravel")] == [
        ln for ln in stderr.splitlines() if "ravel: skipped on the hub path" in ln
    ] and "ravel: skipped on the hub path" in stderr
    assert not (hub_eval / "saebench" / "ravel").exists()
    scr = _doc(hub_eval, "scr")
    assert scr["eval_config"]["dataset_names"] == [
        "LabHC/bias_in_bios_class_set1",
        "canrager/amazon_reviews_mcauley_1and5",
    ]
    names = [d["dataset_name"] for d in scr["eval_result_details"]]
    assert names == [
        "LabHC/bias_in_bios_class_set1/professor/nurse",
        "canrager/amazon_reviews_mcauley_1and5/Books/CDs_and_Vinyl",
    ]
    # the class probes (disjoint words per class) are clean oracles in both datasets
    assert all(d["profession_probe_accuracy"] >= 0.9 for d in scr["eval_result_details"])
    assert set(scr["eval_result_metrics"]["scr_metrics"]) >= {"scr_metric_threshold_2", "scr_dir1_threshold_5"}
    tpp = _doc(hub_eval, "tpp")
    assert [d["dataset_name"] for d in tpp["eval_result_details"]] == ["LabHC/bias_in_bios_class_set1"]
    assert all(c["llm_clean_accuracy"] >= 0.75 for c in tpp["eval_result_details"][0]["classes"])
    absorption = _doc(hub_eval, "absorption_first_letter")
    assert absorption["eval_config"]["prompt_template"] == "{word} has the first letter:"
    assert absorption["eval_config"]["words"] > 50
    # the planted first letters make the ground-truth probes work: the SAE is scored, letter by letter
    assert absorption["eval_result_unstructured"] is None, absorption["eval_result_unstructured"]
    letters = [d["first_letter"] for d in absorption["eval_result_details"]]
    assert len(letters) >= 3 and all(len(c) == 1 and c.islower() for c in letters)
    assert 0 <= absorption["eval_result_metrics"]["mean"]["mean_absorption_fraction_score"] <= 1
    core = _doc(hub_eval, "core")
    assert core["eval_result_metrics"]["sparsity"]["l0"] > 0
    autointerp = _doc(hub_eval, "autointerp")
    assert autointerp["eval_config"]["dataset_name"].endswith("monology/pile-uncopyrighted")
    summary = json.loads((hub_eval / "summary.json").read_text())
    (sae,) = summary["saes"]
    assert set(sae["evals"]) == {"core", "sparse_probing", "absorption", "scr", "tpp", "autointerp"}
    assert {"sae", "random_decoder", "pca", "raw_probe"} <= set(sae["evals"]["sparse_probing"])


def test_hub_documents_validate_with_sae_bench(hub_eval):
    from tests.integration.test_saebench_schema import _validate

    try:
        from bench.peers import peer_python

        python = peer_python(build=False, peer="sae_bench")
    except SaelabError as e:
        pytest.skip(f"the sae_bench peer venv is unavailable ({e})")
    files = sorted((hub_eval[0] / "saebench").glob("*/*_eval_results.json"))
    report = _validate(python, files)
    bad = [(r["file"], r["errors"]) for r in report["results"] if r["ok"] is False]
    assert not bad, bad
    by_id = {r["eval_type_id"]: r for r in report["results"]}
    assert by_id["absorption_first_letter"]["class"] == "AbsorptionEvalOutput"


def test_pooling_is_the_mean_over_non_special_positions(hub_setup, organism_tokenizer):
    """An independent mean: run each text alone, drop BOS/EOS/pad positions, average."""
    from evals.saebench import concepts, hub_concepts
    from sae.hooks import resolve_hook
    from sae.model import load_model

    _root, model_dir, _data, _run = hub_setup
    model, tok = load_model(str(model_dir))
    spec = resolve_hook(model, "blocks.1.hook_resid_post")
    texts = ["Anna likes cheese . Paris", "<|endoftext|> red blue", "John"]
    tokens, mask = hub_concepts.tokenize(tok, texts, 6)
    pooled = concepts.read_masked(model, [spec], tokens, mask, batch_size=2)[spec.name].pool()
    for i, text in enumerate(texts):
        ids = tok(text)["input_ids"][:6]
        cache = concepts.run_capturing(model, torch.tensor([ids]), [spec.tl_name])
        acts = spec.read(cache[spec.tl_name])[0]
        keep = [j for j, t in enumerate(ids) if t not in (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)]
        torch.testing.assert_close(pooled[i], acts[keep].mean(0), atol=1e-5, rtol=1e-5)


def test_local_files_follow_saebench_sampling(hub_setup):
    """bias_in_bios: per class, TRAIN // 4 texts of each gender, drawn with DataFrame.sample(random_state=seed)."""
    _root, _model, data, _run = hub_setup
    train = hub_datasets.class_texts("LabHC/bias_in_bios_class_set1", TRAIN, "train", 42, str(data))
    df = pd.read_parquet(data / "LabHC" / "bias_in_bios" / "train.parquet")
    assert list(train) == ["0", "1", "2", "6", "9"]
    for cls, texts in train.items():
        rows = df[df["profession"] == int(cls)]
        expect = []
        for g in (0, 1):
            expect += rows[rows["gender"] == g]["hard_text"].sample(n=TRAIN // 4, random_state=42).tolist()
        assert texts == expect
    quads = hub_datasets.spurious(
        "LabHC/bias_in_bios_class_set1", ("professor", "nurse"), TRAIN, "train", 42, str(data)
    )
    assert {k: len(v) for k, v in quads.items()} == {
        "pos_p1": 4,
        "neg_p1": 4,
        "pos_p2": 4,
        "neg_p2": 4,
        "biased_p1": 8,
        "biased_p2": 8,
    }


def test_bad_inputs_are_one_line(hub_setup, tmp_path, monkeypatch, capsys):
    from saelab.cli import main

    _root, _model, data, run = hub_setup
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    # a dataset neither local nor cached, the hub unreachable
    with pytest.raises(SaelabError, match=r"dataset 'fancyzhx/ag_news' split 'train': no train\.parquet"):
        hub_datasets.class_texts("fancyzhx/ag_news", TRAIN, "train", 42, str(tmp_path / "empty"))
    # a local copy without the hub's columns
    bad = tmp_path / "bad" / "LabHC" / "bias_in_bios"
    bad.mkdir(parents=True)
    pd.DataFrame({"text": ["a"], "profession": [0], "gender": [0]}).to_parquet(bad / "train.parquet")
    with pytest.raises(SaelabError, match="no column 'hard_text'"):
        hub_datasets.class_texts("LabHC/bias_in_bios_class_set1", TRAIN, "train", 42, str(tmp_path / "bad"))
    with pytest.raises(SaelabError, match="fewer than the 400 needed"):
        hub_datasets.class_texts("LabHC/bias_in_bios_class_set1", 1600, "train", 42, str(data))
    # through the CLI: exit 2 and one line
    suite_file, out = tmp_path / "suite.yaml", tmp_path / "o"
    args = ["eval", "saebench", str(run), "--suite", str(suite_file), "--out", str(out), "--quiet", "--no-controls"]
    suite_file.write_text(json.dumps(suite(tmp_path / "empty", [])))
    assert main([*args, "--evals", "sparse_probing"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'Skylion007/openwebtext'" in err[0]  # the held-out pass reads core's text first
    shutil.copytree(data / "Skylion007" / "openwebtext", tmp_path / "partial" / "Skylion007" / "openwebtext")
    suite_file.write_text(json.dumps(suite(tmp_path / "partial", [])))
    assert main([*args, "--evals", "sparse_probing"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dataset 'LabHC/bias_in_bios' split 'train'" in err[0], err
