"""SAEBench's datasets by their hub names, sampled as sae-bench 0.6.0 samples them (the hub path).

Each dataset becomes ``{class: [text, ...]}`` for a train and a test split, the way
``sae_bench_utils/dataset_utils.py`` builds them (``get_multi_label_train_test_data``):

- ``LabHC/bias_in_bios_class_set{1,2,3}`` (columns ``hard_text``, ``profession`` int,
  ``gender`` int; set N picks five professions) and ``canrager/amazon_reviews_mcauley_1and5``
  (``text``, ``category`` int, ``rating`` 1.0/5.0): per class, ``size // 4`` texts of each
  value of the second column (``DataFrame.sample(n, random_state=seed)``), classes named by
  the stringified first column (``"0"``, ``"1"``, ...);
- ``..._sentiment``: ``size // 2`` texts per rating (classes ``"1.0"``, ``"5.0"``);
- ``fancyzhx/ag_news`` (``text``, ``label``): ``size // 2`` per label 0-3;
- ``codeparrot/github-code`` (``code``, ``language``; streamed): snippets longer than
  534 characters, their first 150 characters dropped (the licence header), ``size // 2``
  per language after a seeded shuffle;
- ``Helsinki-NLP/europarl`` (configs ``en-fr``, ``fr-it``, ``de-en``, ``es-fr``, ``nl-pt``;
  column ``translation``: {lang: text}; streamed): the first ``size`` rows' text in the
  pair's language, shuffled, ``size // 2`` per language.

SCR (``spurious``) uses the four (class, spurious value) quadrants of a class pair of
bias_in_bios (profession × gender) or the amazon reviews (category × rating) as
``dataset_creation.get_spurious_corr_data`` does (the first rows of each quadrant, not a
sample). Core's and autointerp's text (``Skylion007/openwebtext``,
``monology/pile-uncopyrighted``) are read by ``sae.text`` (``text_source``).

Where a dataset is read from (``table``): ``hub.data_dir/<hub name>/[<config>/]<split>.*``
(parquet, jsonl or json with the hub's columns; a ``<split>-00000-of-00001.parquet`` shard
as the hub stores it works too) when present, else ``datasets.load_dataset(name)``: the
hub, or ``datasets``' own cache when the hub is unreachable or ``HF_HUB_OFFLINE`` /
``HF_DATASETS_OFFLINE`` is set. A dataset found nowhere is one line naming it and the
local path it was looked for at (``ConfigError``, exit 2). (``codeparrot/github-code`` is a loading-script dataset;
``datasets`` >= 4 no longer runs scripts, so on the hub it may need a local copy.)
"""

from __future__ import annotations

import contextlib
import os
import random
from pathlib import Path

from sae.errors import ConfigError

#: sae-bench dataset_info.profession_dict (bias_in_bios' profession ids)
PROFESSIONS = {
    name: i
    for i, name in enumerate(
        [
            "accountant",
            "architect",
            "attorney",
            "chiropractor",
            "comedian",
            "composer",
            "dentist",
            "dietitian",
            "dj",
            "filmmaker",
            "interior_designer",
            "journalist",
            "model",
            "nurse",
            "painter",
            "paralegal",
            "pastor",
            "personal_trainer",
            "photographer",
            "physician",
            "poet",
            "professor",
            "psychologist",
            "rapper",
            "software_engineer",
            "surgeon",
            "teacher",
            "yoga_teacher",
        ]
    )
}
GENDERS = {"male": 0, "female": 1}
#: sae-bench dataset_info.amazon_category_dict (the reviews' category ids)
AMAZON_CATEGORIES = {
    name: i
    for i, name in enumerate(
        [
            "All_Beauty",
            "Toys_and_Games",
            "Cell_Phones_and_Accessories",
            "Industrial_and_Scientific",
            "Gift_Cards",
            "Musical_Instruments",
            "Electronics",
            "Handmade_Products",
            "Arts_Crafts_and_Sewing",
            "Baby_Products",
            "Health_and_Household",
            "Office_Products",
            "Digital_Music",
            "Grocery_and_Gourmet_Food",
            "Sports_and_Outdoors",
            "Home_and_Kitchen",
            "Subscription_Boxes",
            "Tools_and_Home_Improvement",
            "Pet_Supplies",
            "Video_Games",
            "Kindle_Store",
            "Clothing_Shoes_and_Jewelry",
            "Patio_Lawn_and_Garden",
            "Unknown",
            "Books",
            "Automotive",
            "CDs_and_Vinyl",
            "Beauty_and_Personal_Care",
            "Amazon_Fashion",
            "Magazine_Subscriptions",
            "Software",
            "Health_and_Personal_Care",
            "Appliances",
            "Movies_and_TV",
        ]
    )
}
#: SCR datasets (sae-bench scr_and_tpp): (class names → ids, the spurious column's two values, first = "pos")
SCR_DATASETS = {
    "LabHC/bias_in_bios_class_set1": (PROFESSIONS, (GENDERS["male"], GENDERS["female"])),
    "canrager/amazon_reviews_mcauley_1and5": (AMAZON_CATEGORIES, (1.0, 5.0)),
}

#: sae-bench dataset_info.chosen_classes_per_dataset
CHOSEN_CLASSES = {
    "LabHC/bias_in_bios_class_set1": ["0", "1", "2", "6", "9"],
    "LabHC/bias_in_bios_class_set2": ["11", "13", "14", "18", "19"],
    "LabHC/bias_in_bios_class_set3": ["20", "21", "22", "25", "26"],
    "canrager/amazon_reviews_mcauley_1and5": ["1", "2", "3", "5", "6"],
    "canrager/amazon_reviews_mcauley_1and5_sentiment": ["1.0", "5.0"],
    "codeparrot/github-code": ["C", "Python", "HTML", "Java", "PHP"],
    "fancyzhx/ag_news": ["0", "1", "2", "3"],
    "Helsinki-NLP/europarl": ["en", "fr", "de", "es", "nl"],
}
#: (hub repo, text column, class column, balancing column) of the two-column datasets
TWO_COLUMN = {
    "LabHC/bias_in_bios": ("hard_text", "profession", "gender"),
    "canrager/amazon_reviews_mcauley_1and5": ("text", "category", "rating"),
}
EUROPARL_PAIRS = {"en": "en-fr", "fr": "fr-it", "de": "de-en", "es": "es-fr", "nl": "nl-pt"}
GITHUB_SKIP_CHARS, GITHUB_MIN_CHARS = 50 * 3, 128 * 3  # sae-bench: 50 tokens skipped, 128-token contexts, 3 chars
LOCAL_EXTS = (".parquet", ".jsonl", ".json")


def _local_files(data_dir: str | None, repo: str, split: str, config: str | None) -> tuple[Path | None, list[Path]]:
    if not data_dir:
        return None, []
    base = Path(data_dir).expanduser() / repo / (config or "")
    if not base.is_dir():
        return base, []
    files = sorted(
        p
        for p in base.rglob("*")
        if p.is_file() and p.suffix in LOCAL_EXTS and (p.stem == split or p.name.startswith(f"{split}-"))
    )
    return base, files


def _read_local(files: list[Path], where: str):
    import pandas as pd

    frames = []
    for f in files:
        try:
            if f.suffix == ".parquet":
                frames.append(pd.read_parquet(f))
            else:
                frames.append(pd.read_json(f, lines=f.suffix == ".jsonl"))
        except Exception as e:  # pandas and pyarrow raise many types for unreadable files
            raise ConfigError(f"dataset {where}: cannot read {f.name} ({type(e).__name__}: {str(e)[:100]})") from None
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


@contextlib.contextmanager
def _offline_if_unreachable():
    """``datasets`` reads only its cache while the hub is unreachable (no retries against a dead network)."""
    from sae.model import hub_reachable

    offline = os.environ.get("HF_DATASETS_OFFLINE", "").lower() in ("1", "true", "yes", "on") or not hub_reachable()
    if not offline:
        yield False
        return
    import datasets.config
    import huggingface_hub.constants as hub_constants

    saved = datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = hub_constants.HF_HUB_OFFLINE = True
    try:
        yield True
    finally:
        datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE = saved


def _missing(repo: str, split: str, config: str | None, base: Path | None, offline: bool, err: Exception) -> str:
    where = f"{repo}" + (f" ({config})" if config else "")
    local = f"no {split}.parquet/.jsonl under {base}" if base else "saebench.hub.data_dir is unset"
    why = "the hub is unreachable and datasets' cache has no copy" if offline else f"{type(err).__name__}"
    return (
        f"dataset {where!r} split {split!r}: {local}, and {why}; copy it there (the hub's columns) or run online once"
    )


def table(repo: str, split: str, data_dir: str | None, config: str | None = None, columns: tuple[str, ...] = ()):
    """One split of a hub dataset as a pandas DataFrame: the local copy under ``data_dir``, else ``datasets``."""
    base, files = _local_files(data_dir, repo, split, config)
    if files:
        df = _read_local(files, f"{repo} ({base})")
    else:
        import datasets

        datasets.disable_progress_bars()
        with _offline_if_unreachable() as offline:
            try:
                df = datasets.load_dataset(repo, config, split=split).to_pandas()
            except Exception as e:  # datasets raises many types (connection, not found, offline)
                raise ConfigError(_missing(repo, split, config, base, offline, e)) from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ConfigError(f"dataset {repo!r} split {split!r}: no column {missing[0]!r} (columns: {list(df.columns)})")
    if len(df) == 0:
        raise ConfigError(f"dataset {repo!r} split {split!r}: empty (no rows)")
    return df


def stream(repo: str, split: str, data_dir: str | None, config: str | None = None, columns: tuple[str, ...] = ()):
    """Rows (dicts) of a dataset SAEBench streams: the local copy's rows, else ``datasets`` in streaming mode
    (offline: its cache, not streamed)."""
    base, files = _local_files(data_dir, repo, split, config)
    if files:
        df = table(repo, split, data_dir, config, columns)
        yield from df.to_dict("records")
        return
    import datasets

    datasets.disable_progress_bars()
    with _offline_if_unreachable() as offline:
        try:
            ds = datasets.load_dataset(repo, config, split=split, streaming=not offline)
            rows = iter(ds)
            first = next(rows, None)
        except Exception as e:
            raise ConfigError(_missing(repo, split, config, base, offline, e)) from None
    if first is None:
        raise ConfigError(f"dataset {repo!r} split {split!r}: empty (no rows)")
    missing = [c for c in columns if c not in first]
    if missing:
        raise ConfigError(f"dataset {repo!r} split {split!r}: no column {missing[0]!r} (columns: {sorted(first)})")
    yield first
    yield from rows


def _sample(df, n: int, seed: int, where: str) -> list[str]:
    if len(df) < n:
        raise ConfigError(f"{where}: {len(df)} rows, fewer than the {n} needed (lower saebench.hub train/test sizes)")
    return df.sample(n=n, random_state=seed).tolist()


def _balanced(df, repo: str, per_quadrant: int, seed: int, classes: list[str], split: str) -> dict[str, list[str]]:
    """sae-bench ``get_balanced_dataset``: per class, ``per_quadrant`` texts of each balancing value."""
    text, col1, col2 = TWO_COLUMN[repo]
    out = {}
    for cls in classes:
        rows = df[df[col1].astype(str) == cls]
        texts = []
        for value, group in sorted(rows.groupby(col2), key=lambda kv: kv[0]):
            texts += _sample(group[text], per_quadrant, seed, f"dataset {repo!r} {split} class {cls} {col2} {value}")
        if rows[col2].nunique() < 2:
            raise ConfigError(f"dataset {repo!r} {split}: class {cls} has one {col2} value; SAEBench balances two")
        out[cls] = texts
    return out


def class_texts(name: str, size: int, split: str, seed: int, data_dir: str | None) -> dict[str, list[str]]:
    """``{class: texts}`` of one split (``train``/``test``) of a sparse-probing dataset, ``size`` texts in all
    (half per class, as SAEBench's binary tasks)."""
    classes = CHOSEN_CLASSES.get(name)
    if classes is None:
        raise ConfigError(f"unknown SAEBench dataset {name!r}; known: {list(CHOSEN_CLASSES)}")
    if "bias_in_bios" in name or name == "canrager/amazon_reviews_mcauley_1and5":
        repo = name.split("_class_set")[0]
        df = table(repo, split, data_dir, columns=TWO_COLUMN[repo])
        return _balanced(df, repo, size // 4, seed, classes, split)
    if name.endswith("_sentiment"):
        repo = name.removesuffix("_sentiment")
        df = table(repo, split, data_dir, columns=("text", "rating"))
        return {
            c: _sample(df[df["rating"].astype(float) == float(c)]["text"], size // 2, seed, f"{name} {split} {c}")
            for c in classes
        }
    if name == "fancyzhx/ag_news":
        df = table(name, split, data_dir, columns=("text", "label"))
        return {
            c: _sample(df[df["label"].astype(int) == int(c)]["text"], size // 2, seed, f"{name} {split} {c}")
            for c in classes
        }
    raise ConfigError(f"{name!r} is streamed: read it with train_test")


def streamed_split(name: str, train_size: int, test_size: int, seed: int, data_dir: str | None):
    """(train, test) ``{class: texts}`` of github-code or europarl, as sae-bench builds them."""
    classes = CHOSEN_CLASSES[name]
    n_train, n_test = train_size // 2, test_size // 2
    total = n_train + n_test
    rng = random.Random(seed)
    found: dict[str, list[str]] = {c: [] for c in classes}
    if name == "codeparrot/github-code":
        for row in stream(name, "train", data_dir, columns=("code", "language")):
            code = row["code"]
            if row["language"] in found and len(code) > GITHUB_MIN_CHARS + GITHUB_SKIP_CHARS:
                found[row["language"]].append(code[GITHUB_SKIP_CHARS:])
            if all(len(v) > total for v in found.values()):
                break
    else:
        for lang in classes:
            for row in stream(name, "train", data_dir, EUROPARL_PAIRS[lang], columns=("translation",)):
                found[lang].append(row["translation"][lang])
                if len(found[lang]) > total:
                    break
    train, test = {}, {}
    for c in classes:
        texts = found[c]
        if len(texts) < total:
            raise ConfigError(
                f"dataset {name!r}: {len(texts)} usable rows of class {c}, fewer than the {total} needed "
                "(lower saebench.hub train/test sizes)"
            )
        rng.shuffle(texts)
        train[c], test[c] = texts[:n_train], texts[n_train:total]
    return train, test


def train_test(name: str, train_size: int, test_size: int, seed: int, data_dir: str | None):
    """(train, test) ``{class: texts}`` of a sparse-probing dataset (sae-bench ``get_multi_label_train_test_data``
    followed by ``filter_dataset`` to the chosen classes)."""
    if name in ("codeparrot/github-code", "Helsinki-NLP/europarl"):
        return streamed_split(name, train_size, test_size, seed, data_dir)
    return class_texts(name, train_size, "train", seed, data_dir), class_texts(name, test_size, "test", seed, data_dir)


def spurious(
    dataset: str, pair: tuple[str, str], size: int, split: str, seed: int, data_dir: str | None
) -> dict[str, list[str]]:
    """The four quadrants of a class pair × the spurious column (sae-bench ``get_spurious_corr_data``; bias_in_bios:
    profession × gender male/female; amazon reviews: category × rating 1.0/5.0): ``pos_p1``, ``neg_p1``,
    ``pos_p2``, ``neg_p2`` (pos: the column's first value) with ``size // 4`` texts each, and ``biased_p1``
    (pos P1) / ``biased_p2`` (neg P2) with ``2 * (size // 4)`` each, the biased probe's data. Each is the
    quadrant's first rows, as sae-bench takes them."""
    if dataset not in SCR_DATASETS:
        raise ConfigError(f"SCR runs on {list(SCR_DATASETS)}, not {dataset!r}")
    ids, (pos, neg) = SCR_DATASETS[dataset]
    repo = dataset.split("_class_set")[0]
    text, col1, col2 = TWO_COLUMN[repo]
    df = table(repo, split, data_dir, columns=TWO_COLUMN[repo])
    q = size // 4
    quads = {}
    for p_key, cls in (("p1", pair[0]), ("p2", pair[1])):
        for v_key, value in (("pos", pos), ("neg", neg)):
            rows = df[(df[col1] == ids[cls]) & (df[col2] == value)][text].tolist()
            need = 2 * q if (p_key, v_key) in (("p1", "pos"), ("p2", "neg")) else q
            if len(rows) < need:
                raise ConfigError(
                    f"dataset {repo!r} {split}: {len(rows)} rows of {cls} with {col2} {value}, fewer than the {need} "
                    "SCR needs (lower saebench.hub train/test sizes)"
                )
            quads[f"{v_key}_{p_key}"] = rows
    out = {k: v[:q] for k, v in quads.items()}
    out["biased_p1"], out["biased_p2"] = quads["pos_p1"][: 2 * q], quads["neg_p2"][: 2 * q]
    return out  # sae-bench shuffles each list; the probes here are full-batch, so order is moot


def text_source(repo: str, data_dir: str | None, text_field: str = "text"):
    """A ``sae.text.TextSource`` for core's or autointerp's text: the local copy when there is one, else the hub."""
    from sae.model import hub_reachable
    from sae.text import TextSource

    base = Path(data_dir).expanduser() / repo if data_dir else None
    if base is not None and base.is_dir():
        return TextSource(kind="local", path=str(base), text_field=text_field)
    if not hub_reachable():
        where = f"no copy under {base}" if base else "saebench.hub.data_dir is unset"
        raise ConfigError(
            f"dataset {repo!r}: {where} and the hub is unreachable; put its text there (.jsonl/.parquet with a "
            f"{text_field!r} column) or set data.source"
        )
    return TextSource(kind="hub", path=repo, text_field=text_field)
