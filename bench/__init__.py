"""Benchmarks against peers, each printing ratios measured side by side in one run.

``BENCHMARKS`` maps a name to a module exposing ``run(args) -> dict | list`` and,
optionally, ``add_arguments(parser)``. ``saelab bench NAME --json`` runs one;
``saelab bench all`` runs every one, prints a table and writes ``bench/results/NAME.json``.
Peers run from their own virtual environments (``bench/.peers/<peer>/``, git-ignored), built on
first use by ``bench.peers``.
"""

BENCHMARKS: dict[str, str] = {
    "harvest": "bench.harvest",
    "train": "bench.train",
    "scaling": "bench.scaling",
    "parity": "bench.parity",
    "roofline": "bench.roofline",
    "memory": "bench.memory",
    "allocator": "bench.allocator",
    "circuits": "bench.circuits",
    "explorer": "bench.explorer",
    "soak": "bench.soak",
    "interop": "bench.interop",
    "peers": "bench.peer_parity",
    "evals": "bench.evals",
}
