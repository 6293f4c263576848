"""SAEBench's evaluations (Karvonen et al. 2025) on the organism's known world.

One module per evaluation, each registered in ``EVALS`` (name → ``"module:function"``,
resolved at run time like the report's section builders). Every evaluation writes, per
SAE, one JSON file in SAEBench's output shape (``evals.saebench.output``) under
``OUT/saebench/<eval_type_id>/``, and one lab results file ``OUT/saebench_<name>.json``
(kind ``saebench_<name>``) that the report renders (``evals.saebench.sections``).

The organism stands in for SAEBench's datasets: its facts are enumerable
(``organism.world``), so every concept a probe needs is known exactly. Deviations from
SAEBench are stated in each module's docstring. Models without an organism world (GPT-2,
Pythia) take the hub path instead: SAEBench's own datasets (``hub_datasets``), mean-pooled
texts (``hub_concepts``), through the same scoring code (``saebench.source``).
"""

from __future__ import annotations

#: name → "module:function(group: EvalGroup, cfg) -> list[dict]" (the SAEBench documents, one per SAE);
#: the order here is the order they run in
EVALS: dict[str, str] = {
    "core": "evals.saebench.core:run",
    "sparse_probing": "evals.saebench.sparse_probing:run",
    "absorption": "evals.saebench.absorption:run",
    "scr": "evals.saebench.scr:run",
    "tpp": "evals.saebench.tpp:run",
    "ravel": "evals.saebench.ravel:run",
    "autointerp": "evals.saebench.autointerp:run",
}
