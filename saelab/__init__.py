"""saelab: a mechanistic-interpretability lab built around sparse autoencoders.

This package is only the composition root: the ``saelab`` command line and the demo. The
lab itself lives in ``sae`` (models, activations, SAEs, training), ``circuits``,
``evals``, ``app`` and ``organism``. Composing it includes registering the organism as a
model provider (``sae.providers``): the ``saelab.providers`` entry point does the same for
code that imports ``sae`` alone; registering here keeps the command line working in an
install whose entry points predate a provider.
"""

from importlib.metadata import version

from organism.provider import ORGANISM, ORGANISM_B
from sae.providers import register

register(ORGANISM)
register(ORGANISM_B)

__version__ = version("saelab")
