"""The circuit notebooks run top to bottom and pass their own checks with FAST = True (fewer
prompts, ACDC at one τ); acceptance/test_notebooks.py runs them in full."""

from __future__ import annotations

import pytest
from notebook_runs import NAMES, NOTEBOOKS, SPLICE, _text, execute


def test_committed_notebooks_carry_no_outputs():
    import nbformat

    for name in [*NAMES, SPLICE]:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_fast(name, tmp_path):
    nb = execute(name, True, tmp_path)
    assert "all checks passed" in _text(nb)
    written = sorted(p.name for p in tmp_path.glob("circuit_*.json"))
    assert len(written) == 7
