"""Imports point one way: app → evals → circuits → sae; nothing imports app; sae imports none of the others."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# package → packages it must not import at module level
FORBIDDEN = {
    "sae": {"circuits", "evals", "app", "organism", "saelab", "bench"},
    "circuits": {"evals", "app", "organism", "saelab", "bench"},
    "evals": {"app", "organism", "saelab", "bench"},
    "organism": {"evals", "app", "saelab", "bench"},
}


def _module_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in tree.body:  # module level only: lazy imports inside functions are allowed
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_point_one_way(package):
    bad = []
    for path in (ROOT / package).rglob("*.py"):
        hits = _module_level_imports(path) & FORBIDDEN[package]
        if hits:
            bad.append(f"{path.relative_to(ROOT)} imports {sorted(hits)}")
    assert not bad, "\n".join(bad)


def test_organism_init_is_free_of_imports():
    assert (ROOT / "organism" / "__init__.py").read_text().strip() == ""


def test_loading_the_organism_imports_no_organism_code():
    code = (
        "import sys; from sae.model import load_model; load_model('organism'); "
        "bad = sorted(m for m in sys.modules if m.startswith(('organism.', 'circuits', 'evals', 'app')));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
