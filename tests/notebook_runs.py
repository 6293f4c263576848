"""Executing the circuit notebooks with their parameters set, for both tiers."""

from __future__ import annotations

from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ["ioi_circuit.ipynb", "greater_than_circuit.ipynb"]
#: the SAE-splicing notebook (HookedSAETransformer); slow tier only
SPLICE = "splice_and_steer.ipynb"
#: sparse feature circuits and an attribution graph, SAEs and transcoders trained inside; slow tier only
FEATURE_CIRCUITS = "feature_circuits.ipynb"


def execute(name: str, fast: bool, tmp_path: Path, attn_saes: Path | None = None):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", []))
    params.source += f"\nFAST = {fast}\nOUT = {str(tmp_path)!r}\n"
    if attn_saes is not None:
        params.source += f"ATTN_SAES = {str(attn_saes)!r}\n"
    NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    return nb


def _text(nb) -> str:
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            out.append(o.get("text", "") if o.get("output_type") == "stream" else "")
    return "".join(out)
