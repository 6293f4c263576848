"""The organism as a model provider: its weights, its corpus and its frozen circuits.

``sae`` loads ``"organism"`` through this registration (``sae.providers``), found by the
``saelab.providers`` entry point in pyproject.toml or registered by the ``saelab``
package. Importing this module is cheap: the corpus generator, which needs
``circuits.tasks``, is imported only when text is asked for.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from sae.providers import Provider

HERE = Path(__file__).resolve().parent
#: the shipped weights (``saelab organism train`` writes here by default)
WEIGHTS = HERE / "weights"
#: the path-patching circuits frozen by ``saelab organism circuits``
CIRCUITS = HERE / "circuits.json"


def documents(seed: int) -> Iterator[str]:
    """The organism's training corpus, seeded."""
    from organism.corpus import documents as corpus_documents

    return corpus_documents(seed)


ORGANISM = Provider(
    name="organism",
    model_dir=WEIGHTS,
    documents=documents,
    files={"circuits": CIRCUITS},
    default=True,
    rebuild="saelab organism train",
)
