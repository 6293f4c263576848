"""saelab: a mechanistic-interpretability lab built around sparse autoencoders.

This package is only the composition root: the ``saelab`` command line. The lab itself
lives in ``sae`` (models, activations, SAEs, training), ``circuits``, ``evals``, ``app``
and ``organism``.
"""

__version__ = "0.1.0"
