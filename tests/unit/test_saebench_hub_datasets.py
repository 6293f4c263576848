"""SAEBench's dataset sampling (``evals.saebench.hub_datasets``) on local copies in the hub's formats, against
sae-bench 0.6.0's procedure written out here (global ``random.seed`` then ``random.shuffle``; ``DataFrame.sample``)."""

from __future__ import annotations

import json
import random

import pandas as pd
import pytest

from evals.saebench import hub_datasets
from sae.errors import ConfigError


def _jsonl(path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_europarl_is_streamed_shuffled_once_and_split(tmp_path):
    for lang, pair in hub_datasets.EUROPARL_PAIRS.items():
        other = pair.replace(lang, "").strip("-")
        rows = [{"translation": {lang: f"{lang} text {i}", other: f"{other} {i}"}} for i in range(20)]
        _jsonl(tmp_path / "Helsinki-NLP" / "europarl" / pair / "train.jsonl", rows)
    train, test = hub_datasets.train_test("Helsinki-NLP/europarl", 8, 4, 42, str(tmp_path))
    random.seed(42)  # sae-bench get_europarl_dataset: collect size + 1 rows per language, shuffle, split
    for lang in ["en", "fr", "de", "es", "nl"]:
        texts = [f"{lang} text {i}" for i in range(4 + 2 + 1)]
        random.shuffle(texts)
        assert train[lang] == texts[:4] and test[lang] == texts[4:6]


def test_amazon_sentiment_samples_each_rating(tmp_path):
    rows = [{"text": f"review {i}", "rating": 1.0 if i % 2 else 5.0, "category": i % 7} for i in range(40)]
    for split in ("train", "test"):
        path = tmp_path / "canrager" / "amazon_reviews_mcauley_1and5" / f"{split}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_parquet(path)
    got = hub_datasets.class_texts("canrager/amazon_reviews_mcauley_1and5_sentiment", 8, "train", 42, str(tmp_path))
    df = pd.DataFrame(rows)
    assert list(got) == ["1.0", "5.0"]
    for rating in ("1.0", "5.0"):
        assert got[rating] == df[df["rating"] == float(rating)]["text"].sample(n=4, random_state=42).tolist()


def test_github_code_drops_the_licence_header_and_short_files(tmp_path):
    rows = [{"code": "#" * 150 + f"{lang} " * 200, "language": lang} for lang in ["C", "Python", "HTML", "Java", "PHP"]]
    rows = rows * 8 + [{"code": "short", "language": "C"}]
    _jsonl(tmp_path / "codeparrot" / "github-code" / "train.jsonl", rows)
    train, test = hub_datasets.train_test("codeparrot/github-code", 8, 4, 0, str(tmp_path))
    assert all("#" not in t and t.startswith(lang) for lang, ts in train.items() for t in ts)
    assert {len(v) for v in train.values()} == {4} and {len(v) for v in test.values()} == {2}
    with pytest.raises(ConfigError, match="fewer than the 12 needed"):
        hub_datasets.train_test("codeparrot/github-code", 16, 8, 0, str(tmp_path))


def test_text_source_prefers_the_local_copy(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _jsonl(tmp_path / "Skylion007" / "openwebtext" / "train.jsonl", [{"text": "a"}])
    src = hub_datasets.text_source("Skylion007/openwebtext", str(tmp_path))
    assert src.kind == "local" and src.path.endswith("Skylion007/openwebtext")
    with pytest.raises(ConfigError, match="'monology/pile-uncopyrighted': no copy under"):
        hub_datasets.text_source("monology/pile-uncopyrighted", str(tmp_path))
