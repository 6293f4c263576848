"""The organism's word-level tokenizer, built with Hugging Face ``tokenizers``.

Tokens carry their leading space, as GPT-2's do (" John", " 17"), and numbers split into
two-digit groups, so " 1732" becomes " 17" + "32" exactly as GPT-2 splits years. The
vocabulary is enumerated from the corpus grammar (a large seeded sample of every family,
plus every name and number in both spacings), so no corpus text maps to the unknown
token. Decoding concatenates tokens, so ``decode(encode(text)) == text``.
"""

from __future__ import annotations

import itertools

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from circuits.tasks import ioi
from circuits.tasks.vocabulary import EVENT_NOUNS, NAMES, OBJECTS, PLACES
from organism import corpus, world

BOS = "<|endoftext|>"
PAD = "<|pad|>"
UNK = "<|unk|>"
SPECIAL = (BOS, PAD, UNK)

# A word or a number group, each with its optional leading space; punctuation marks
# one at a time (with their leading space); any other whitespace run.
PRETOKEN_PATTERN = r" ?[A-Za-z]+| ?\d\d| ?\d| ?[^\sA-Za-z\d]|\s+"


def _pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Split(Regex(PRETOKEN_PATTERN), behavior="isolated")


def pretokens(text: str) -> list[str]:
    return [piece for piece, _ in _pre_tokenizer().pre_tokenize_str(text)]


def _inventory_words() -> set[str]:
    words = set(NAMES) | set(PLACES) | set(OBJECTS) | set(EVENT_NOUNS)
    for seq in (
        world.CITIES,
        world.JOBS,
        world.FOODS,
        world.COLORS,
        world.ANIMALS,
        world.WEATHER,
        world.DAYS,
        world.MONTHS,
        world.NUMBER_WORDS,
        world.FILLER_WORDS,
        world.SHOP_ITEMS,
    ):
        words |= set(seq)
    words |= {str(i) for i in range(10)} | {f"{i:02d}" for i in range(100)}
    return words


def build_vocab(sample_sentences: int = 20_000, seed: int = 0) -> list[str]:
    """The sorted vocabulary: every pre-token the grammar can emit."""
    pieces: set[str] = set()
    for w in _inventory_words():
        pieces |= {w, " " + w}
    for template in ioi.TEMPLATES:
        text, _ = ioi.render(template, "John", "Mary", "John", "store", "ring")
        pieces |= set(pretokens(text))
    # Family-by-family sample, so rare families are covered regardless of weights.
    for name in corpus.FAMILIES:
        cfg = corpus.CorpusConfig(weights={name: 1.0})
        for _, sentence in itertools.islice(corpus.sentences(seed, cfg), sample_sentences // len(corpus.FAMILIES)):
            pieces |= set(pretokens(" " + sentence))
            pieces |= set(pretokens(sentence))
    return sorted(pieces)


def build_tokenizer(vocab: list[str] | None = None) -> PreTrainedTokenizerFast:
    vocab = vocab if vocab is not None else build_vocab()
    ids = {tok: i for i, tok in enumerate(SPECIAL)}
    for tok in vocab:
        ids.setdefault(tok, len(ids))
    core = Tokenizer(models.WordLevel(ids, unk_token=UNK))
    core.pre_tokenizer = _pre_tokenizer()
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=BOS,
        pad_token=PAD,
        unk_token=UNK,
        add_bos_token=False,
        clean_up_tokenization_spaces=False,
        model_max_length=10**6,
    )
