"""The hub path's concepts: SAEBench's datasets (``hub_datasets``) turned into labelled, pooled activations.

The organism path (``concepts``) reads one position per prompt, where the world's fact
sits. The hub path does what SAEBench does with real text: each text is tokenized with the
model's tokenizer (its own special tokens, no BOS added unless the tokenizer adds one),
truncated to ``context_length`` (128) tokens, and its activations are **mean-pooled** over
the positions that are not BOS, EOS or padding (``activation_collection``'s mask); an SAE's
codes are taken at every such position and pooled the same way (``get_sae_meaned_activations``).
Both paths hand the evals the same ``concepts.ConceptData`` and ``concepts.Pooled``, so one
copy of each eval's scoring serves both.

Absorption's first-letter task needs no dataset: the model's vocabulary's alphabetic tokens
(sae-bench ``get_alpha_tokens``), 80 % of them for training, each in an ICL spelling prompt
of ten other words of its split (``"{word} has the first letter: {L}"``, newline-separated,
a newline first) ending at ``"{word}"``. SAEBench reads the word at position -6 of the prompt
with ``" has the first letter:"`` appended; causal attention makes the activation there the
same as at the last token of the prompt cut after the word, which is what is read here (a
word whose last token in context is not its own token is left out).
"""

from __future__ import annotations

import random
import string

import torch

from evals.saebench import concepts, hub_datasets
from evals.saebench.concepts import ConceptData, Item, Pooled
from sae.errors import SaelabError
from sae.progress import progress_bar

ABSORPTION_TEMPLATE = "{word} has the first letter:"
ABSORPTION_TRAIN_FRACTION = 0.8  # sae-bench create_dataset_probe_training
ICL_EXAMPLES = 10  # sae-bench max_icl_examples


def resolve(cfg, model_name: str) -> str:
    """``organism`` or ``hub`` for SAEs of ``model_name`` (``cfg``: the suite's ``saebench`` section)."""
    if cfg.source != "auto":
        return cfg.source
    from sae import providers

    return "organism" if providers.find(model_name) is not None else "hub"


def on_hub(group) -> bool:
    return resolve(group.suite.saebench, group.entries[0].info["model"]) == "hub"


def hub_sizes(group) -> dict:
    """The hub path's sizes as SAEBench's eval_config names them (SCR and TPP record them alike)."""
    h = group.suite.saebench.hub
    return {"train_set_size": h.train_size, "test_set_size": h.test_size, "context_length": h.context_length}


def hub_text(suite, model_name: str, purpose: str):
    """The ``TextSource`` SAEBench reads for ``purpose`` (``core``: Skylion007/openwebtext; ``autointerp``:
    monology/pile-uncopyrighted; a local copy under ``hub.data_dir`` first), or None off the hub path or when no
    SAEBench eval runs."""
    cfg = suite.saebench
    if not cfg.evals or resolve(cfg, model_name) != "hub":
        return None
    repo = cfg.hub.core_dataset if purpose == "core" else cfg.hub.autointerp_dataset
    return hub_datasets.text_source(repo, cfg.hub.data_dir)


#: why RAVEL is not run on the hub path (printed once per model, the eval skipped)
NO_RAVEL = (
    "ravel: skipped on the hub path ({model} has no organism world, and SAEBench's RAVEL data are JSON files it "
    "downloads, not a datasets repo)"
)


def special_ids(tokenizer) -> set[int]:
    ids = {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}
    return {i for i in ids if i is not None}


def tokenize(tokenizer, texts: list[str], context_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens [n, L], mask [n, L]): each text's first ``context_length`` tokens, right-padded; the mask is True
    at real positions that are not BOS, EOS or padding (SAEBench's ``get_bos_pad_eos_mask``)."""
    ids = tokenizer(list(texts), truncation=True, max_length=context_length)["input_ids"]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    tokens = torch.full((len(ids), context_length), pad if pad is not None else 0, dtype=torch.long)
    mask = torch.zeros(len(ids), context_length, dtype=torch.bool)
    for i, row in enumerate(ids):
        tokens[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = True
    special = torch.tensor(sorted(special_ids(tokenizer)), dtype=torch.long)
    return tokens, mask & ~torch.isin(tokens, special)


def read_texts(group, specs: list, texts: list[str], desc: str) -> dict[str, Pooled]:
    """Per hook, the masked positions of every text (``Pooled``: ``pool()`` is SAEBench's mean pooling)."""
    hub = group.suite.saebench.hub
    tokens, mask = tokenize(group.tokenizer, texts, hub.context_length)
    with progress_bar(total=len(texts), desc=desc, disable=not group.progress, leave=False) as bar:
        return concepts.read_masked(group.model, specs, tokens, mask, hub.batch_size, bar)


def labelled(name: str, train: dict[str, list[str]], test: dict[str, list[str]]) -> tuple[ConceptData, list[str]]:
    """A ``ConceptData`` of texts (one item per text; the test split is its own group set) and the texts."""
    items, texts = [], []
    for split, block in (("train", train), ("test", test)):
        for cls, rows in block.items():
            for i, text in enumerate(rows):
                items.append(Item([], f"{split}/{cls}/{i}", cls))
                texts.append(text)
    data = ConceptData(name, items, list(train))
    data.test_groups = {it.group for it in items if it.group.startswith("test/")}
    return data, texts


def probing_set(group, specs: list, name: str, seed: int) -> tuple[ConceptData, dict[str, Pooled]]:
    """One sparse-probing (or TPP) dataset: its classes' train and test texts, read and ready to pool."""
    hub = group.suite.saebench.hub
    train, test = hub_datasets.train_test(name, hub.train_size, hub.test_size, seed, hub.data_dir)
    data, texts = labelled(name, train, test)
    return data, read_texts(group, specs, texts, name)


def scr_set(group, specs: list, dataset: str, pair: tuple[str, str], seed: int) -> dict:
    """Texts of one class pair of an SCR dataset: per hook ``Pooled``, 0/1 spurious attribute (1 = the spurious
    column's first value: male, rating 1.0) and class (1 = P1) per text, train and test indices (the four balanced
    quadrants) and the biased probe's (pos P1, neg P2)."""
    hub = group.suite.saebench.hub
    blocks = {
        split: hub_datasets.spurious(dataset, pair, size, split, seed, hub.data_dir)
        for split, size in (("train", hub.train_size), ("test", hub.test_size))
    }
    texts, spurious, label = [], [], []
    index: dict[str, list[int]] = {"train": [], "test": [], "biased": []}

    def add(split: str, key: str, s: int, j: int, into: str) -> None:
        for text in blocks[split][key]:
            index[into].append(len(texts))
            texts.append(text)
            spurious.append(s)
            label.append(j)

    for key, s, j in (("pos_p1", 1, 1), ("neg_p1", 0, 1), ("pos_p2", 1, 0), ("neg_p2", 0, 0)):
        add("train", key, s, j, "train")
        add("test", key, s, j, "test")
    add("train", "biased_p1", 1, 1, "biased")
    add("train", "biased_p2", 0, 0, "biased")
    acts = read_texts(group, specs, texts, "scr " + "/".join(pair))
    return {"acts": acts, "gender": spurious, "job": label, **index}


def alpha_words(tokenizer) -> dict[str, int]:
    """sae-bench ``get_alpha_tokens``: vocabulary entries that are letters only (a leading space allowed), as
    word → token id."""
    letters = set(string.ascii_letters)
    special = set(tokenizer.all_special_tokens)
    out = {}
    for token, i in tokenizer.get_vocab().items():
        if token in special:
            continue
        word = tokenizer.convert_tokens_to_string([token])
        bare = word[1:] if word.startswith(" ") else word
        if bare and set(bare) <= letters:
            out[word] = i
    return dict(sorted(out.items()))


def icl_prompt(word: str, examples: list[str], rng: random.Random) -> str:
    """sae-bench ``create_icl_prompt`` (separator first), cut after the word."""
    pool = [w for w in examples if w != word]
    icl = rng.sample(pool, min(ICL_EXAMPLES, len(pool)))
    shots = [ABSORPTION_TEMPLATE.format(word=w) + " " + w.strip()[0].upper() for w in icl]
    return "\n" + "\n".join([*shots, word])


def first_letter_set(group, specs: list, seed: int, max_words: int | None):
    """(ConceptData labelled by first letter, train rows, test rows, per-hook rows at the word, skipped words)."""
    tok = group.tokenizer
    rng = random.Random(seed)
    ids_of = alpha_words(tok)
    words = list(ids_of)
    if max_words is not None and len(words) > max_words:
        words = sorted(rng.sample(words, max_words))
    if len(words) < 2:
        raise SaelabError("absorption: the tokenizer has fewer than two alphabetic tokens")
    shuffled = rng.sample(words, len(words))
    cut = int(len(shuffled) * ABSORPTION_TRAIN_FRACTION)
    splits = {"train": shuffled[:cut], "test": shuffled[cut:]}
    items, skipped = [], []
    bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
    for split, split_words in splits.items():
        for word in split_words:
            ids = bos + tok(icl_prompt(word, split_words, rng))["input_ids"]
            if ids[-1] != ids_of[word]:  # the word is not its own token in this context
                skipped.append(word)
                continue
            items.append(Item(ids, f"{split}/{word}", word.strip()[0].lower()))
    data = ConceptData("first_letter", items, sorted({it.label for it in items}))
    rows = {s: [i for i, it in enumerate(items) if it.group.startswith(s + "/")] for s in splits}
    acts = concepts.read_last(group.model, specs, items)
    return data, rows["train"], rows["test"], acts, skipped
