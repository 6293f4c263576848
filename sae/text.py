"""Text sources, and their packing into fixed-length token rows that start with BOS.

Several kinds of source, one stream interface:

- a model provider's name (``sae.providers``; the default provider's when unset): the
  text that provider generates, seeded (the organism's corpus for ``organism``);
- ``local``: a file or directory of ``.txt``, ``.jsonl``/``.json`` (a text field) or
  ``.parquet`` files, read through Hugging Face ``datasets`` in streaming mode;
- ``hub``: a hub dataset name, streamed (needs network or a local cache);
- ``tokens``: a pre-tokenized dataset (a ``datasets.save_to_disk`` directory or parquet
  files) whose ``tokens`` column holds rows at least ``context_size`` long; rows are cut
  to ``context_size`` and used as they are (they should already start with BOS).

Documents are tokenized, each preceded by BOS, concatenated and cut into rows of
``context_size`` tokens; a row that does not begin on a document boundary gets a BOS
prepended, so every row starts with BOS, like the model saw in training. BOS positions
carry no information about the text and are excluded from harvesting downstream.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from sae import providers
from sae.config import FrozenConfig
from sae.errors import SaelabError

LOCAL_FORMATS = {".txt": "text", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
#: the kinds of source that read data; any other kind is a model provider's generated text
DATA_KINDS = ("local", "hub", "tokens")


class TextSource(FrozenConfig):
    """Where the text comes from."""

    kind: str = Field(
        default_factory=providers.default_name,
        json_schema_extra=providers.schema_default,
        description="Source type: 'local', 'hub', 'tokens', or a model provider's name "
        "for the text it generates (default: the default provider).",
    )
    path: str | None = Field(None, description="Local file or directory (kind=local) or hub dataset name (kind=hub).")
    text_field: str = Field(
        "text",
        description="Column holding the text (jsonl, parquet, hub), "
        "or the token ids (kind=tokens; default 'tokens' there).",
    )
    split: str = Field("train", description="Dataset split (hub).")
    config_name: str | None = Field(None, description="Hub dataset configuration name, if any.")

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        if kind in DATA_KINDS or providers.find(kind) is not None:
            return kind
        choices = ", ".join(repr(k) for k in (*DATA_KINDS, *providers.names()))
        raise PydanticCustomError("text_source_kind", "Input should be one of {choices}", {"choices": choices})

    def describe(self) -> dict:
        return self.model_dump()


def _local_files(path: Path) -> tuple[str, list[str]]:
    if not path.exists():
        raise SaelabError(f"dataset {path}: no such file or directory")
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    files = [p for p in files if p.suffix in LOCAL_FORMATS]
    if not files:
        raise SaelabError(f"dataset {path}: no .txt, .jsonl, .json or .parquet files")
    if all(p.stat().st_size == 0 for p in files):
        raise SaelabError(f"dataset {path}: empty (no records)")
    formats = {LOCAL_FORMATS[p.suffix] for p in files}
    if len(formats) > 1:
        raise SaelabError(f"dataset {path}: mixes formats {sorted(formats)}; use one kind of file")
    return formats.pop(), [str(p) for p in files]


def _dataset_texts(dataset, field: str, where: str) -> Iterator[str]:
    empty = True
    try:
        for record in dataset:
            if field not in record:
                raise SaelabError(f"dataset {where}: no text field {field!r} (fields: {sorted(record)})")
            text = record[field]
            if not isinstance(text, str):
                raise SaelabError(f"dataset {where}: field {field!r} holds {type(text).__name__}, not text")
            empty = False
            if text:
                yield text
    except UnicodeDecodeError:
        raise SaelabError(f"dataset {where}: not UTF-8 text") from None
    if empty:
        raise SaelabError(f"dataset {where}: empty (no records)")


def _local_texts(source: TextSource) -> Iterator[str]:
    if not source.path:
        raise SaelabError("text source kind=local needs a path")
    fmt, files = _local_files(Path(source.path).expanduser())
    if fmt == "text":  # plain text: one document per file, decoded strictly
        for name in files:
            try:
                text = Path(name).read_bytes().decode("utf-8")
            except UnicodeDecodeError:
                raise SaelabError(f"dataset {name}: not UTF-8 text") from None
            if text.strip():
                yield text
        return
    import datasets

    datasets.disable_progress_bars()
    try:
        ds = datasets.load_dataset(fmt, data_files=files, split="train", streaming=True)
    except Exception as e:  # datasets raises many types for unreadable files
        raise SaelabError(f"dataset {source.path}: cannot read ({type(e).__name__}: {str(e)[:120]})") from None
    yield from _dataset_texts(ds, source.text_field, source.path)


def _hub_texts(source: TextSource) -> Iterator[str]:
    from sae.model import hub_reachable

    if not source.path:
        raise SaelabError("text source kind=hub needs a dataset name in 'path'")
    if not hub_reachable():
        raise SaelabError(f"dataset {source.path!r}: the hub is unreachable (offline); use a local copy (kind=local)")
    import datasets

    try:
        ds = datasets.load_dataset(source.path, source.config_name, split=source.split, streaming=True)
    except Exception as e:
        raise SaelabError(f"dataset {source.path!r}: cannot load ({type(e).__name__}: {str(e)[:120]})") from None
    yield from _dataset_texts(ds, source.text_field, source.path)


def iter_texts(source: TextSource, seed: int = 0) -> Iterator[str]:
    """Documents from ``source``: a provider's text is seeded, files are read in order."""
    if source.kind == "local":
        return _local_texts(source)
    if source.kind in DATA_KINDS:
        return _hub_texts(source)
    return providers.get(source.kind).documents(seed)


def pack_rows(texts: Iterator[str], tokenizer, context_size: int, chunk: int = 256) -> Iterator[list[int]]:
    """Rows of exactly ``context_size`` token ids, each starting with BOS."""
    if context_size < 2:
        raise SaelabError("context_size must be at least 2")
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if bos is None:
        raise SaelabError("the tokenizer has neither a BOS nor an EOS token to start rows with")
    carry: list[int] = []
    while True:
        docs = list(itertools.islice(texts, chunk))
        if not docs:
            return
        stream = carry
        for ids in tokenizer(docs, add_special_tokens=False)["input_ids"]:
            stream.append(bos)
            stream.extend(ids)
        start = 0
        while len(stream) - start >= context_size:
            yield stream[start : start + context_size]
            start += context_size
            if start < len(stream) and stream[start] != bos:
                start -= 1  # reuse one slot for the BOS that starts the next row
                stream[start] = bos
        carry = stream[start:]


def iter_token_rows(source: TextSource, context_size: int, chunk: int = 1024) -> Iterator:
    """Rows of a pre-tokenized dataset, cut to ``context_size`` (numpy int64 arrays)."""
    import datasets
    import numpy as np

    if not source.path:
        raise SaelabError("text source kind=tokens needs a path")
    path = Path(source.path).expanduser()
    field = source.text_field if source.text_field != "text" else "tokens"
    try:
        if path.is_dir() and (path / "dataset_info.json").exists():
            ds = datasets.load_from_disk(str(path))
        else:
            _, files = _local_files(path)
            ds = datasets.load_dataset("parquet", data_files=files, split="train")
    except SaelabError:
        raise
    except Exception as e:
        raise SaelabError(f"dataset {path}: cannot read ({type(e).__name__}: {str(e)[:120]})") from None
    if field not in ds.column_names:
        raise SaelabError(f"dataset {path}: no token column {field!r} (columns: {ds.column_names})")
    if len(ds) == 0:
        raise SaelabError(f"dataset {path}: empty (no records)")
    ds = ds.select_columns([field]).with_format("numpy")  # no per-token Python objects
    for lo in range(0, len(ds), chunk):
        for row in ds[lo : lo + chunk][field]:
            if len(row) < context_size:
                raise SaelabError(
                    f"dataset {path}: a row has {len(row)} tokens, fewer than context_size {context_size}"
                )
            yield np.asarray(row[:context_size], dtype=np.int64)
