"""The peer virtual environments (``bench/.peers/<peer>/``): SAELens, sparsify, dictionary_learning,
circuit-tracer, sae-bench and SAEDashboard.

Peers run in their own interpreters so their pins never touch ours, one venv per peer
because their pins conflict (dictionary_learning wants nnsight 0.3, SAELens 6.54 a newer
transformers). Every venv gets the same local torch wheel first (``pip install torch==2.13.0``
before the peer, so nothing pulls a CUDA torch), so both sides compute with the same kernels.
``peer_python(peer)`` builds a venv on first use, once; ``run_peer(script, payload, peer)``
runs a script from ``bench/peers/`` there and returns the JSON object it prints last;
``python -m bench.peers [PEER ...]`` builds the named venvs (all of them without a name).

sae-bench is the exception: its pins (sae-lens, sae-probes, torchvision, numpy < 2, datasets < 4)
are those of a full GPU benchmark, and all the lab needs from it is its output dataclasses
(``sae_bench.evals.*.eval_output``), which import only pydantic. So its venv gets pydantic and
``pip install --no-deps sae-bench``, no torch (``NO_DEPS``, ``NO_TORCH``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sae.errors import SaelabError

HERE = Path(__file__).resolve().parent
PEERS = HERE / ".peers"
SCRIPTS = HERE / "peers"
TORCH = "torch==2.13.0"
PINS: dict[str, list[str]] = {
    "saelens": ["sae-lens==6.54.12", "transformer-lens==3.9.0"],
    "sparsify": ["eai-sparsify==1.3.3"],
    # dictionary-learning 0.1.0 imports nnsight 0.3 (its pin), which breaks on transformers 5;
    # 4.46.3 is the transformers release current with nnsight 0.3
    "dictionary_learning": ["dictionary-learning==0.1.0", "transformers==4.46.3"],
    # reads saelab's attribution-graph JSON with its own pydantic models and recomputes
    # pruning and scores with its own graph.py (tests/integration/test_attribution_graph_peer.py)
    "circuit_tracer": ["circuit-tracer==0.5.0"],
    "sae_bench": ["pydantic==2.14.4"],
    # sae-dashboard 0.8.0 wants sae-lens 6, transformer-lens 2, transformers < 4.57, datasets < 4;
    # sae-lens 6.54.12 accepts transformer-lens 2.16+; 2.18 wants transformers >= 4.57, so 2.17.0
    "sae_dashboard": [
        "sae-dashboard==0.8.0",
        "sae-lens==6.54.12",
        "transformer-lens==2.17.0",
        "transformers==4.56.2",
        "datasets==3.6.0",
        # transformer-lens 2 wants numpy < 2, and pyarrow 22+ (pulled by datasets) numpy >= 2
        "pyarrow==21.0.0",
    ],
}
#: installed after PINS with ``--no-deps`` (what the lab imports from them needs nothing more)
NO_DEPS: dict[str, list[str]] = {"sae_bench": ["sae-bench==0.6.0"]}
#: peers whose venv gets no torch (nothing they run imports it)
NO_TORCH = {"sae_bench"}
#: packages a peer's dependencies pull in that break on the CPU torch wheel, removed after install:
#: nnsight requires torchvision, and PyPI's torchvision (built for the CUDA torch) fails to register
#: its ops on torch+cpu; transformers imports it whenever it is present
REMOVE: dict[str, list[str]] = {"dictionary_learning": ["torchvision"], "sae_dashboard": ["torchvision"]}
PROBES = {
    "saelens": "import sae_lens, transformer_lens",
    "sparsify": "import sparsify",
    "dictionary_learning": "import dictionary_learning.trainers",
    "circuit_tracer": "import circuit_tracer.graph, circuit_tracer.frontend.graph_models",
    "sae_bench": "import sae_bench.evals.core.eval_output, sae_bench.evals.absorption.eval_output",
    "sae_dashboard": "import sae_dashboard.neuronpedia.neuronpedia_runner",
}
DISTRIBUTIONS = {
    "saelens": "sae-lens",
    "sparsify": "eai-sparsify",
    "dictionary_learning": "dictionary-learning",
    "circuit_tracer": "circuit-tracer",
    "sae_bench": "sae-bench",
    "sae_dashboard": "sae-dashboard",
}


def venv(peer: str = "saelens") -> Path:
    """Where ``peer``'s virtual environment lives."""
    if peer not in PINS:
        raise SaelabError(f"unknown peer {peer!r} (known: {', '.join(PINS)})")
    return PEERS / peer


def _python(peer: str) -> Path:
    return venv(peer) / "bin" / "python"


def _marker(peer: str) -> Path:
    return venv(peer) / ".saelab-pins.json"


def _requirements(peer: str) -> list[str]:
    """Everything installed into ``peer``'s venv, in order (the marker records it)."""
    torch = [] if peer in NO_TORCH else [TORCH]
    return [*torch, *PINS[peer], *(f"--no-deps {r}" for r in NO_DEPS.get(peer, []))]


def _works(peer: str) -> bool:
    """Whether the venv is built with today's pins: a marker written once its import probe
    passed (importing a peer costs seconds to minutes, so it is not redone on every run)."""
    if not _python(peer).exists():
        return False
    pins = json.dumps(_requirements(peer))
    if _marker(peer).exists() and _marker(peer).read_text() == pins:
        return True
    probe = subprocess.run([str(_python(peer)), "-c", PROBES[peer]], capture_output=True)
    if probe.returncode != 0:
        return False
    _marker(peer).write_text(pins)
    return True


def peer_python(build: bool = True, peer: str = "saelens") -> Path:
    """``peer``'s interpreter, built if missing; raises ``SaelabError`` (one line) when it cannot be."""
    if _works(peer):
        return _python(peer)
    where = venv(peer)
    if not build:
        raise SaelabError(
            f"the {peer} peer environment {where} is missing; run 'python -m bench.peers {peer}' to build it"
        )
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(where)],
        [str(_python(peer)), "-m", "pip", "install", "-q", "--upgrade", "pip"],
    ]
    pip = [str(_python(peer)), "-m", "pip", "install", "-q"]
    if peer in NO_TORCH:
        steps.append([*pip, *PINS[peer]])
    else:
        steps += [[*pip, TORCH], [*pip, TORCH, *PINS[peer]]]
    if NO_DEPS.get(peer):
        steps.append([*pip, "--no-deps", *NO_DEPS[peer]])
    if REMOVE.get(peer):
        steps.append([str(_python(peer)), "-m", "pip", "uninstall", "-y", "-q", *REMOVE[peer]])
    print(f"building the {peer} peer environment in {where} (once) ...", file=sys.stderr)
    for step in steps:
        result = subprocess.run(step, capture_output=True, text=True)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["?"]
            raise SaelabError(f"cannot build the {peer} peer environment ({' '.join(step[-2:])}): {tail[0]}")
    if not _works(peer):
        raise SaelabError(f"the {peer} peer environment was built but '{PROBES[peer]}' fails in it")
    return _python(peer)


def run_peer(script: str, payload: dict, peer: str = "saelens", timeout: float = 3600) -> dict:
    """Run ``bench/peers/<script>`` in ``peer``'s interpreter with ``payload`` as JSON on stdin."""
    python = peer_python(peer=peer)
    result = subprocess.run(
        [str(python), str(SCRIPTS / script)],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=HERE.parent,
    )
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-5:])
        raise SaelabError(f"peer script {script} failed in the {peer} environment: {tail}")
    lines = result.stdout.strip().splitlines()
    if not lines:
        tail = "\n".join(result.stderr.strip().splitlines()[-3:])
        raise SaelabError(f"peer script {script} printed no result in the {peer} environment: {tail or 'no output'}")
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.peers [PEER ...]``: build (or check) the named peer venvs, all without a name."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=main.__doc__)
    parser.add_argument("peers", nargs="*", metavar="PEER", help=f"any of: {', '.join(PINS)} (default: all)")
    args = parser.parse_args(argv)
    unknown = [p for p in args.peers if p not in PINS]
    if unknown:
        parser.error(f"unknown peer {unknown[0]!r} (known: {', '.join(PINS)})")
    for peer in args.peers or list(PINS):
        try:
            print(f"{peer}: {peer_python(peer=peer)}")
        except SaelabError as e:
            print(f"saelab: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
