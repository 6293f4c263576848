"""Autointerp without a model: scores on hand-computed cases, the statistical baseline, the
OpenAI-compatible client against a mock endpoint (reply, timeout, malformed reply, cache)."""

from __future__ import annotations

import math
import random

import pytest
from autointerp_server import MockLLM

from evals.saebench import autointerp
from evals.saebench.autointerp_baseline import describe, detect, explain, fuzz, read
from evals.saebench.autointerp_contexts import LatentContexts, Window, highlight, peaks, split_quantiles
from evals.saebench.autointerp_judges import LLMExplainer, LLMScorer, RuleScorer, StatisticalExplainer
from evals.saebench.autointerp_llm import ChatClient, LLMError
from evals.saebench.autointerp_scoring import (
    classifier_metrics,
    parse_delphi_predictions,
    parse_explanation_saebench,
    parse_saebench_predictions,
    pooled,
    saebench_score,
)
from evals.saebench.config import AutointerpSettings


def test_balanced_accuracy_by_hand():
    # 3 positives (2 called), 2 negatives (1 called): TPR 2/3, TNR 1/2; the failed call is left out
    m = classifier_metrics([1, 1, 1, 0, 0, 1], [1, 0, 1, 0, 1, None])
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert (m["tp"], m["fn"], m["tn"], m["fp"], m["failed"]) == (2, 1, 1, 1, 1)
    assert m["precision"] == pytest.approx(2 / 3)
    # plain accuracy would be 3/5; balanced accuracy is not it
    assert m["balanced_accuracy"] != pytest.approx(3 / 5)
    # delphi: an absent class's rate counts 0
    assert classifier_metrics([1, 1], [1, 1])["balanced_accuracy"] == 0.5


def test_pooled_is_one_confusion_over_latents():
    a = classifier_metrics([1, 1, 0, 0], [1, 1, 1, 0])  # TPR 1, TNR 1/2
    b = classifier_metrics([1, 0, 0, 0], [0, 0, 0, 0])  # TPR 0, TNR 1
    # pooled: TP 2 FN 1 -> 2/3; TN 4 FP 1 -> 4/5
    assert pooled([a, b])["balanced_accuracy"] == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert (a["balanced_accuracy"] + b["balanced_accuracy"]) / 2 == pytest.approx(0.625)


def test_saebench_score_and_parsers():
    # windows 1..4, only 1 active; the judge names 1 and 3: right on 1, 2, 4
    assert saebench_score([1, 3], [True, False, False, False]) == 0.75
    assert saebench_score([], [True, False]) == 0.5
    assert parse_saebench_predictions("1, 3 and 5.") == [1, 3, 5]
    assert parse_saebench_predictions("None") == []
    assert parse_saebench_predictions("maybe 2") is None
    assert parse_explanation_saebench("This neuron activates on city names.") == "city names"
    assert parse_delphi_predictions("Sure: [1,0, 1]", 3) == [True, False, True]
    with pytest.raises(ValueError, match="expected a list of 2"):
        parse_delphi_predictions("[1,0,1]", 2)
    with pytest.raises(ValueError, match="no"):
        parse_delphi_predictions("yes", 1)


def test_highlight_as_delphi_and_saebench():
    toks, marks = ["a", " b", " c", " d"], [False, True, True, False]
    assert highlight(toks, marks) == "a<< b c>> d"  # delphi: runs merged
    assert highlight(toks, marks, merge=False) == "a<< b>><< c>> d"  # SAEBench: token by token


def test_peaks_no_overlap_and_quantiles():
    import torch

    v = torch.zeros(2, 12)
    v[0, 4], v[0, 5], v[0, 8], v[1, 6] = 5.0, 4.0, 3.0, 2.0
    # buffer 2: centres 2..9; (0,5) lies within 2 of the (0,4) peak, (0,8) does not
    assert peaks(v, 2) == [(0, 4), (0, 8), (1, 6)]
    ranked = list(range(20))  # strongest first
    picked = split_quantiles(ranked, 4, 8, random.Random(0))
    assert len(picked) == 8
    # two from each even slice of five, tagged with it
    assert sorted((i // 5, q) for i, q in picked) == [(q, q) for q in range(4) for _ in (0, 1)]


def test_statistical_explainer_finds_a_category():
    cfg = AutointerpSettings()
    cities = ["Paris", "Rome", "Oslo", "Dublin"]
    marked = [([" lives", " in", " " + c, "."], [False, False, True, False]) for c in cities]
    quiet = [["Anna", " likes", " bread", "."], ["Tom", " lives", " in", " a", " house", "."]]
    text = explain(marked, quiet, cfg)
    assert "a city" in text, text
    assert detect(text, [[" in", " Berlin"], [" in", " bread"]]) == [True, False]  # Berlin: unseen, same category
    assert fuzz(text, [([" in", " Lisbon"], [False, True]), ([" in", " Lisbon"], [True, True])]) == [True, False]
    assert "Lisbon" in read("This neuron activates on a city") and "Lisbon" not in read('the token "in"')
    assert explain([], quiet, cfg).startswith("nothing")
    assert read(describe(['"'], [])) == {'"'}


def _window(tokens, acts, kind="quantile"):
    return Window(list(tokens), [float(a) for a in acts], kind)


def _contexts(latent: int, word: str) -> LatentContexts:
    """A latent that fires on the city at the end of '<word> lives in <city>.'."""
    cities = ["Paris", "Rome", "Oslo", "Dublin", "Athens", "Prague"]
    act = [_window([word, " lives", " in", " " + c, "."], [0, 0, 0, 1 + i / 10, 0]) for i, c in enumerate(cities)]
    quiet = [_window([word, " likes", " " + f, "."], [0, 0, 0, 0], "non_activating") for f in ("bread", "soup", "fish")]
    ctx = LatentContexts(latent, max_activation=1.5, n_activating_windows=len(act))
    ctx.delphi_train, ctx.delphi_test = act[:3], act[3:]
    ctx.non_activating_train, ctx.non_activating_test = quiet[:1], quiet[1:]
    ctx.saebench_generation = act[:3]
    ctx.saebench_scoring = [act[3], quiet[1], act[4], quiet[2]]
    ctx.saebench_active = [True, False, True, False]
    ctx.top_max = 1.5
    return ctx


def test_statistical_baseline_end_to_end_on_hand_built_contexts():
    cfg = AutointerpSettings()
    d = autointerp.score_latent(_contexts(3, "Tom"), StatisticalExplainer(cfg), RuleScorer(), cfg, 0, print)
    assert d["explainer"] == d["scorer"] == "statistical-baseline"
    assert d["delphi"]["detection"]["balanced_accuracy"] == 1.0 and d["delphi"]["fuzzing"]["balanced_accuracy"] == 1.0
    assert d["saebench"]["score"] == 1.0 and not d["failures"]
    m = autointerp.summarise([d], skipped=2)
    assert m["autointerp"]["autointerp_score"] == 1.0 and m["counts"]["n_latents_too_few_examples"] == 2
    assert m["delphi"]["detection_balanced_accuracy"] == 1.0


def test_a_latent_without_held_out_windows_is_recorded_not_scored(capsys):
    cfg = AutointerpSettings()
    ctx = _contexts(4, "Tom")
    ctx.delphi_test = []  # every activating window went to the explainer
    d = autointerp.score_latent(ctx, StatisticalExplainer(cfg), RuleScorer(), cfg, 0, autointerp.reporter("run/sae"))
    assert d["delphi"] is None and d["failures"] == ["delphi: no held-out activating window to score"]
    assert d["saebench"]["score"] == 1.0  # SAEBench's protocol has its own windows and still runs
    assert "latent 4: delphi: no held-out activating window" in capsys.readouterr().err


def test_client_reply_cache_and_key(tmp_path, monkeypatch):
    monkeypatch.setenv("SAELAB_LLM_API_KEY", "sk-test")
    with MockLLM() as server:
        client = ChatClient(server.url, "mock-model", tmp_path / "cache")
        msgs = [{"role": "system", "content": "We're studying neurons"}, {"role": "user", "content": "x"}]
        assert client.complete(msgs, 30) == "This neuron activates on a word that is a city."
        assert server.requests[0]["path"] == "/v1/chat/completions"
        assert server.requests[0]["auth"] == "Bearer sk-test"
        assert server.requests[0]["body"]["model"] == "mock-model"
        again = ChatClient(server.url, "mock-model", tmp_path / "cache")
        assert again.complete(msgs, 30) == "This neuron activates on a word that is a city."
        assert len(server.requests) == 1 and again.requests == 0 and again.cache_hits == 1
        other = ChatClient(server.url, "another-model", tmp_path / "cache")  # the model is part of the key
        other.complete(msgs, 30)
        assert len(server.requests) == 2


def test_client_timeout_and_malformed_reply(tmp_path):
    with MockLLM(slow=("SLOW",), broken=("BROKEN",), delay=1.5) as server:
        client = ChatClient(server.url, "m", tmp_path, timeout_s=0.3)
        with pytest.raises(LLMError, match=r"timed out after 0\.3 s"):
            client.complete([{"role": "user", "content": "SLOW"}], 5)
        with pytest.raises(LLMError, match="malformed reply"):
            client.complete([{"role": "user", "content": "BROKEN"}], 5)
        assert not list(tmp_path.rglob("*.json"))  # failures are not cached


def test_llm_judges_record_failures_and_go_on(tmp_path, capsys):
    cfg = AutointerpSettings(explainer="llm", scorer="llm", llm_url="http://x", llm_model="m", examples_per_prompt=2)
    # latent 7's windows mention Zed (its requests time out), latent 8's mention Bob (malformed replies)
    with MockLLM(slow=("Zed",), broken=("Bob",), delay=1.5) as server:
        client = ChatClient(server.url, "m", tmp_path, timeout_s=0.3)
        explainer, scorer = LLMExplainer(client), LLMScorer(client)
        details = [
            autointerp.score_latent(_contexts(latent, word), explainer, scorer, cfg, 0, autointerp.reporter("run/sae"))
            for latent, word in ((5, "Tom"), (7, "Zed"), (8, "Bob"), (9, "Ann"))
        ]
    lines = [line for line in capsys.readouterr().err.splitlines() if line]
    ok = details[0]
    assert not ok["failures"] and ok["explainer"] == "m"
    assert ok["delphi"]["explanation"] == "a word that is a city"
    assert ok["saebench"]["explanation"] == "a word that is a city"
    # the mock names windows 1 and 2; 1 and 3 are active: right on 1 and 4
    assert ok["saebench"]["score"] == 0.5 and ok["saebench"]["predictions"] == [1, 2]
    assert ok["delphi"]["detection"]["failed"] == 0
    slow, broken = details[1], details[2]
    assert slow["failures"] == [
        "delphi explanation: timed out after 0.3 s waiting for " + client.endpoint,
        "saebench explanation: timed out after 0.3 s waiting for " + client.endpoint,
    ]
    assert slow["delphi"] is None and slow["saebench"] is None
    assert all(f.split(": ", 1)[1].startswith("malformed reply") for f in broken["failures"])
    assert broken["failures"] and broken["delphi"] is None
    # one line per failure, each naming the SAE, the latent and the problem
    assert len(lines) == len(slow["failures"]) + len(broken["failures"])
    assert lines[0] == f"autointerp: SAE run/sae latent 7: {slow['failures'][0]}"
    assert all("latent 8: " in line and "malformed reply" in line for line in lines[2:])
    assert details[3]["failures"] == []  # the run went on
    m = autointerp.summarise(details, skipped=0)
    assert m["counts"]["n_failures"] == 4 and m["counts"]["n_latents_saebench_scored"] == 2


def test_config_needs_an_endpoint_for_the_llm():
    with pytest.raises(ValueError, match="llm_url and llm_model"):
        AutointerpSettings(scorer="llm")
    with pytest.raises(ValueError, match="no window centre"):
        AutointerpSettings(context_size=16, buffer=10)
    assert math.isfinite(AutointerpSettings().timeout_s)
