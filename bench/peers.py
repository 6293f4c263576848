"""The peer virtual environment (``bench/.peers``): SAELens and TransformerLens 3.9 beside us.

Peers run in their own interpreter so their pins never touch ours; they use the same
torch wheel, so both sides compute with the same kernels. ``peer_python()`` builds the
environment on first use; ``run_peer(script, payload)`` runs a script from
``bench/peers/`` there and returns the JSON object it prints last.
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
PINS = ["sae-lens==6.54.12", "transformer-lens==3.9.0"]


def _python() -> Path:
    return PEERS / "bin" / "python"


def _works() -> bool:
    if not _python().exists():
        return False
    probe = subprocess.run([str(_python()), "-c", "import sae_lens, transformer_lens"], capture_output=True)
    return probe.returncode == 0


def peer_python(build: bool = True) -> Path:
    """The peer interpreter, built if missing; raises ``SaelabError`` when it cannot be."""
    if _works():
        return _python()
    if not build:
        raise SaelabError(f"the peer environment {PEERS} is missing; run 'saelab bench harvest' to build it")
    steps = [
        [sys.executable, "-m", "venv", str(PEERS)],
        [str(_python()), "-m", "pip", "install", "-q", "--upgrade", "pip"],
        [str(_python()), "-m", "pip", "install", "-q", TORCH],
        [str(_python()), "-m", "pip", "install", "-q", *PINS],
    ]
    print(f"building the peer environment in {PEERS} (once) ...", file=sys.stderr)
    for step in steps:
        result = subprocess.run(step, capture_output=True, text=True)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["?"]
            raise SaelabError(f"cannot build the peer environment ({' '.join(step[:4])}...): {tail[0]}")
    if not _works():
        raise SaelabError("the peer environment was built but cannot import sae_lens")
    return _python()


def run_peer(script: str, payload: dict, timeout: float = 3600) -> dict:
    """Run ``bench/peers/<script>`` in the peer interpreter with ``payload`` as JSON on stdin."""
    python = peer_python()
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
        raise SaelabError(f"peer script {script} failed: {tail}")
    return json.loads(result.stdout.strip().splitlines()[-1])
