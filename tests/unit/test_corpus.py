"""The organism corpus and tokenizer: seeded, complete, and faithful to the held-out split."""

from __future__ import annotations

import itertools
import random
import re

import pytest

from organism import corpus
from organism.tokenizer import build_tokenizer, pretokens


def _take(it, n):
    return list(itertools.islice(it, n))


def test_corpus_is_deterministic_given_a_seed():
    assert _take(corpus.documents(7), 20) == _take(corpus.documents(7), 20)
    assert _take(corpus.documents(7), 20) != _take(corpus.documents(8), 20)


def test_corpus_mixes_every_family():
    families = {f for f, _ in _take(corpus.sentences(0), 5000)}
    assert families == set(corpus.FAMILIES)
    assert len(corpus.FAMILIES) >= 12  # IOI, greater-than and at least 10 others


def test_ioi_sentences_avoid_heldout_pairs_and_template():
    rng = random.Random(3)
    for _ in range(3000):
        sentence, att = corpus.ioi_example(rng)
        assert not corpus.heldout_pair(att["IO"], att["S"]), sentence
        assert att["template"] != corpus.HELDOUT_IOI_TEMPLATE
        words = re.findall(r"[A-Za-z]+", sentence)
        assert words[-1] == att["IO"] and words.count(att["IO"]) == 2 and words.count(att["S"]) == 2


def test_heldout_pairs_are_a_minority_and_symmetric():
    from circuits.tasks.vocabulary import NAMES

    pairs = [(a, b) for a in NAMES for b in NAMES if a < b]
    frac = sum(corpus.heldout_pair(a, b) for a, b in pairs) / len(pairs)
    assert 0.1 < frac < 0.3
    assert all(corpus.heldout_pair(a, b) == corpus.heldout_pair(b, a) for a, b in pairs[:200])


def test_corpus_config_rejects_unknown_family():
    with pytest.raises(ValueError, match="unknown sentence families"):
        corpus.CorpusConfig(weights={"ioi": 1.0, "poetry": 1.0})


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def test_tokenizer_covers_the_corpus_and_round_trips(tokenizer):
    docs = _take(corpus.documents(11), 300)
    ids = tokenizer(docs, add_special_tokens=False)["input_ids"]
    assert all(tokenizer.unk_token_id not in row for row in ids)
    assert all(tokenizer.decode(row) == doc for row, doc in zip(ids, docs, strict=True))


def test_tokenizer_splits_years_like_gpt2(tokenizer):
    assert pretokens(" 1732") == [" 17", "32"]
    assert tokenizer.convert_ids_to_tokens(tokenizer.encode(" 1732", add_special_tokens=False)) == [" 17", "32"]
    assert all(len(tokenizer.encode(f"{y:02d}", add_special_tokens=False)) == 1 for y in range(100))


def test_tokenizer_saves_and_loads_through_transformers(tokenizer, tmp_path):
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(tmp_path)
    assert (tmp_path / "tokenizer.json").is_file()
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded.bos_token == "<|endoftext|>" and loaded.bos_token_id == tokenizer.bos_token_id
    text = "When John and Mary went to the store, John gave a drink to"
    assert loaded.encode(text, add_special_tokens=False) == tokenizer.encode(text, add_special_tokens=False)


def test_vocabulary_is_deterministic():
    from organism.tokenizer import build_vocab

    assert build_vocab(sample_sentences=3000) == build_vocab(sample_sentences=3000)
