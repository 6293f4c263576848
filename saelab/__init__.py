"""saelab: a mechanistic-interpretability lab built around sparse autoencoders.

The public API, the names a SAELens user already knows::

    from saelab import load_model, load_sae, SAE, HookedSAETransformer, train, evaluate

- ``load_model(name)``: ``(TransformerBridge, tokenizer)`` for ``"organism"``, a local model
  directory or a hub name (``sae.model.load_model``);
- ``load_sae(path_or_release, sae_id=None)`` / ``SAE.load_from_disk(path)`` /
  ``SAE.from_pretrained(release, sae_id)``: an SAE with the hook it reads (``sae.spliceable``);
- ``HookedSAETransformer.from_pretrained(name)``: the model with SAEs spliced in
  (``add_sae``, ``run_with_saes``, ``run_with_cache_with_saes``; ``sae.hooked``);
- ``train(config, out)`` / ``evaluate(saes, suite, out)``: ``saelab train`` / ``saelab eval``
  as functions (``saelab.api``).

They are imported on first use, so ``import saelab`` stays cheap. Beyond the API this
package is the composition root: the ``saelab`` command line and the demo; the lab itself
lives in ``sae`` (models, activations, SAEs, training), ``circuits``, ``evals``, ``app`` and
``organism``. Composing it includes registering the organism as a model provider
(``sae.providers``): the ``saelab.providers`` entry point does the same for code that
imports ``sae`` alone; registering here keeps the command line working in an install whose
entry points predate a provider.
"""

from importlib import import_module
from importlib.metadata import version
from typing import TYPE_CHECKING

from organism.provider import ORGANISM, ORGANISM_B
from sae.providers import register

register(ORGANISM)
register(ORGANISM_B)

__version__ = version("saelab")

#: public name → the module that defines it (imported on first access)
_API = {
    "load_model": "sae.model",
    "SAE": "sae.spliceable",
    "HookedSAETransformer": "sae.hooked",
    "load_sae": "saelab.api",
    "train": "saelab.api",
    "evaluate": "saelab.api",
}
__all__ = ["SAE", "HookedSAETransformer", "__version__", "evaluate", "load_model", "load_sae", "train"]

if TYPE_CHECKING:
    from sae.hooked import HookedSAETransformer
    from sae.model import load_model
    from sae.spliceable import SAE
    from saelab.api import evaluate, load_sae, train


def __getattr__(name: str):
    if name in _API:
        value = getattr(import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'saelab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
