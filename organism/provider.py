"""The organisms as model providers: their weights, their corpora and their frozen circuits.

``sae`` loads ``"organism"`` and ``"organism-b"`` through these registrations
(``sae.providers``), found by the ``saelab.providers`` entry points in pyproject.toml or
registered by the ``saelab`` package. Importing this module is cheap: the corpus
generator, which needs ``circuits.tasks``, is imported only when text is asked for.

Each organism's text is the corpus it was trained on: the ``CorpusConfig`` recorded in its
weights' ``training.json`` (``config.corpus``), not a default, so that organism-b's text
speaks of organism-b's world (its ``world_seed``). A ``training.json`` that predates a
corpus field gets that field's default, which is what the model was trained with then.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from pathlib import Path

from sae.errors import SaelabError
from sae.providers import Provider

HERE = Path(__file__).resolve().parent
#: the shipped weights (``saelab organism train`` writes here by default)
WEIGHTS = HERE / "weights"
#: the path-patching circuits frozen by ``saelab organism circuits``
CIRCUITS = HERE / "circuits.json"
#: organism-b, the held-out second organism (docs/validation.md)
WEIGHTS_B = HERE / "weights_b"
CIRCUITS_B = HERE / "circuits_b.json"
CONFIG_B = "configs/organism_b.yaml"


def corpus_config(model_dir: Path):
    """The ``CorpusConfig`` the weights in ``model_dir`` were trained on (from ``training.json``)."""
    from organism.corpus import CorpusConfig

    meta = model_dir / "training.json"
    if not meta.is_file():
        raise SaelabError(f"{meta} is missing: the organism's corpus is unknown without it; retrain the organism")
    try:
        corpus = json.loads(meta.read_text(encoding="utf-8"))["config"]["corpus"]
        return CorpusConfig(**corpus)
    except (ValueError, KeyError, TypeError) as e:
        raise SaelabError(f"{meta}: no readable config.corpus ({type(e).__name__}: {e})") from None


def documents(seed: int, model_dir: Path = WEIGHTS) -> Iterator[str]:
    """The organism's training corpus, seeded, as its weights' ``training.json`` configures it."""
    from organism.corpus import documents as corpus_documents

    return corpus_documents(seed, corpus_config(model_dir))


ORGANISM = Provider(
    name="organism",
    model_dir=WEIGHTS,
    documents=documents,
    files={"circuits": CIRCUITS},
    default=True,
    rebuild="saelab organism train",
)

ORGANISM_B = Provider(
    name="organism-b",
    model_dir=WEIGHTS_B,
    documents=partial(documents, model_dir=WEIGHTS_B),
    files={"circuits": CIRCUITS_B},
    rebuild=f"saelab organism train --config {CONFIG_B} --out organism/weights_b",
)
