"""The circuit notebooks run top to bottom and pass their own checks: the fast tier with
FAST = True (fewer prompts, ACDC at one τ), the slow tier in full."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ["ioi_circuit.ipynb", "greater_than_circuit.ipynb"]


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


def test_committed_notebooks_carry_no_outputs():
    import nbformat

    for name in NAMES:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_fast(name, tmp_path):
    nb = execute(name, True, tmp_path)
    assert "all checks passed" in _text(nb)
    written = sorted(p.name for p in tmp_path.glob("circuit_*.json"))
    assert len(written) == 7


@pytest.fixture(scope="module")
def shared_attn_saes(tmp_path_factory):
    """One set of attention SAEs for both notebooks (the second reuses the first's)."""
    return tmp_path_factory.mktemp("attn_saes")


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_in_full(name, tmp_path, shared_attn_saes):
    nb = execute(name, False, tmp_path, attn_saes=shared_attn_saes)
    assert "all checks passed" in _text(nb)
