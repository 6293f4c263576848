"""Supervised-dictionary evaluations of SAEs on IOI (Makelov, Lange & Nanda 2024).

Supervised dictionaries of the task's attributes (IO, S, Pos) are fitted at the circuit's
heads; SAEs (task, full-distribution and a random-decoder control) are scored against
them on sufficiency, necessity, control and interpretability. Modules, in data order:
``prompts`` (attributes, split, counterfactuals) → ``locations`` (cross-sections from
the circuit's roles) → ``activations`` (reading and writing them) → ``dictionaries``,
``task_saes``, ``full_saes``, ``loading`` → ``metrics``, ``interpretability``,
``evaluate`` → ``summary``, ``runner``, ``cli``, ``figures``, ``report``.
"""
