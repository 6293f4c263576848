"""Text sources: the organism corpus, local txt/jsonl/parquet through datasets, clear errors."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from sae.errors import SaelabError
from sae.text import TextSource, iter_texts, pack_rows

DOCS = [
    "When John and Mary went to the store, John gave a drink to Mary.",
    "Counting: 3, 4, 5, 6.",
    "The war lasted from the year 1732 to the year 1788.",
]


def _write(tmp_path, fmt):
    if fmt == "txt":
        for i, d in enumerate(DOCS):
            (tmp_path / f"{i}.txt").write_text(d)
    elif fmt == "jsonl":
        (tmp_path / "d.jsonl").write_text("\n".join(json.dumps({"text": d, "id": i}) for i, d in enumerate(DOCS)))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"text": DOCS}), tmp_path / "d.parquet")
    return tmp_path


@pytest.mark.parametrize("fmt", ["txt", "jsonl", "parquet"])
def test_local_files_in_three_formats(tmp_path, fmt):
    texts = list(iter_texts(TextSource(kind="local", path=str(_write(tmp_path, fmt)))))
    assert texts == DOCS


def test_rows_start_with_bos_and_keep_every_token(organism_tokenizer, tmp_path):
    tok = organism_tokenizer
    rows = list(pack_rows(iter(DOCS * 4), tok, 10))
    assert all(len(r) == 10 and r[0] == tok.bos_token_id for r in rows)
    flat = [t for r in rows for t in r if t != tok.bos_token_id]
    expected = [t for d in DOCS * 4 for t in tok.encode(d, add_special_tokens=False)]
    assert flat == expected[: len(flat)]  # nothing lost or reordered, only the tail cut


def test_organism_source_is_seeded():
    a = list(itertools.islice(iter_texts(TextSource(), seed=1), 3))
    assert a == list(itertools.islice(iter_texts(TextSource(), seed=1), 3))
    assert a != list(itertools.islice(iter_texts(TextSource(), seed=2), 3))


def test_store_reads_local_files(organism, tmp_path):
    from sae.store import StoreConfig, open_store

    model, tok = organism
    path = _write(tmp_path, "jsonl")
    cfg = StoreConfig(
        hooks=["blocks.0.hook_resid_post"], source={"kind": "local", "path": str(path)}, context_size=8, n_tokens=10_000
    )
    rows = sum(len(b) for b in open_store(cfg, model, tok, progress=False).batches(16))
    n_tokens = sum(len(tok.encode(d, add_special_tokens=False)) + 1 for d in DOCS)
    assert 0 < rows < n_tokens  # budget larger than the data: the source runs out first


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "no such file or directory"),
        (lambda p: p.mkdir() or (p / "a.csv").write_text("x"), "no .txt, .jsonl"),
        (lambda p: p.mkdir() or (p / "a.txt").write_bytes(b"\xff\xfe caf\xe9"), "not UTF-8"),
        (lambda p: p.mkdir() or (p / "a.jsonl").write_text(""), "empty|cannot read"),
        (lambda p: p.mkdir() or (p / "a.jsonl").write_text('{"body": "x"}\n'), "no text field 'text'"),
    ],
)
def test_bad_datasets_get_one_clear_error(tmp_path, setup, message):
    path = tmp_path / "data"
    setup(path)
    with pytest.raises(SaelabError, match=message):
        list(iter_texts(TextSource(kind="local", path=str(path))))


def test_offline_hub_dataset_fails_fast(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SaelabError, match="unreachable"):
        next(iter_texts(TextSource(kind="hub", path="Skylion007/openwebtext")))


def test_packing_pads_nothing(organism_tokenizer):
    rows = torch.tensor(list(pack_rows(iter(DOCS * 10), organism_tokenizer, 16)))
    assert (rows != organism_tokenizer.pad_token_id).all()
