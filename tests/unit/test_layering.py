"""Imports point one way, on every import: module level, inside functions, and literal names
passed to ``importlib``. No two modules import each other. ``sae`` reaches the organism only
through the provider registry (``sae.providers``), never by name.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10: pytest itself depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]

#: The layers, lowest first. A package may import its own layer and the ones before it,
#: never a later one. Packages sharing a tier (a tuple) may import each other.
LAYERS: tuple[str | tuple[str, ...], ...] = ("sae", "circuits", "organism", "evals", "app", ("bench", "saelab"))
#: Calls whose first argument, a string literal, names a module to import.
IMPORTING_CALLS = {"import_module", "find_spec", "__import__"}


def _tiers() -> dict[str, int]:
    return {pkg: i for i, tier in enumerate(LAYERS) for pkg in ((tier,) if isinstance(tier, str) else tier)}


@dataclass(frozen=True)
class Edge:
    source: str  # importing module
    target: str  # imported module (the deepest module of the code base the name reaches)
    where: str  # file:line
    how: str  # "import", "from", or the importing call

    def __str__(self) -> str:
        return f"{self.where}: {self.source} -> {self.target} ({self.how})"


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path, packages) -> dict[str, Path]:
    """Every module of ``packages`` under ``root``: dotted name → file."""
    found = {}
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            if any(part.startswith(".") for part in path.relative_to(root).parts):
                continue  # bench/.peers: checkouts of other projects
            found[_module_name(root, path)] = path
    return found


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The deepest module of the code base that the dotted ``name`` reaches, if any."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in known:
            return candidate
    return None


def _absolute(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute name of ``from <level dots><name> import ...`` written in ``module``."""
    if level == 0:
        return name or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, *([name] if name else [])])


def _call_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def imports_of(module: str, path: Path, known: dict[str, Path], root: Path) -> list[Edge]:
    """Every import of ``module``, wherever it sits in the file, that reaches the code base."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    rel = path.relative_to(root)
    edges = []

    def add(name: str, node: ast.AST, how: str) -> None:
        target = _resolve(name, known)
        if target is None or module == target or module.startswith(target + "."):
            return  # outside the code base, or an ancestor package, which Python imports first anyway
        edge = Edge(module, target, f"{rel}:{node.lineno}", how)
        if edge not in edges:
            edges.append(edge)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node, "import")
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, is_package, node.level, node.module)
            for alias in node.names:  # ``from pkg import sub`` imports the submodule when there is one
                add(f"{base}.{alias.name}" if base else alias.name, node, "from")
        elif isinstance(node, ast.Call) and _call_name(node.func) in IMPORTING_CALLS and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                package = next((k.value for k in node.keywords if k.arg == "package"), None)
                name = first.value
                if name.startswith(".") and isinstance(package, ast.Constant):
                    level = len(name) - len(name.lstrip("."))
                    name = _absolute(package.value, True, level, name.lstrip(".") or None)
                add(name, node, f"{_call_name(node.func)}()")
    return edges


def import_graph(root: Path = ROOT) -> list[Edge]:
    known = modules(root, _tiers())
    return [edge for name, path in known.items() for edge in imports_of(name, path, known, root)]


def upward(edges: list[Edge]) -> list[Edge]:
    """Imports of a later layer than the importer's own."""
    tier = _tiers()
    return [e for e in edges if tier[e.target.split(".")[0]] > tier[e.source.split(".")[0]]]


def cycles(edges: list[Edge]) -> list[list[str]]:
    """Groups of modules that import each other, directly (two modules) or round a longer
    loop: the strongly connected components of the import graph with more than one module."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.source, set()).add(e.target)
        graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


# ---- the code base -------------------------------------------------------------------------------


def test_the_layers_name_every_package():
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert set(_tiers()) == packages - {"tests", "notebooks"}


def test_imports_point_one_way():
    bad = upward(import_graph())
    assert not bad, (
        "upward imports (layers, lowest first: " + " -> ".join(map(str, LAYERS)) + "):\n" + "\n".join(map(str, bad))
    )


def test_no_modules_import_each_other():
    """Not two modules (``a`` imports ``b`` and ``b`` imports ``a``), nor a longer loop."""
    assert not cycles(import_graph())


def test_organism_init_is_free_of_imports():
    assert (ROOT / "organism" / "__init__.py").read_text().strip() == ""


def _docstring_nodes(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def organism_mentions(root: Path) -> list[str]:
    """String literals of ``sae`` (docstrings aside) that name the organism: its provider name,
    a module (``organism.corpus``) or a path (``organism/weights``)."""
    word = re.compile(r"\borganism\b")
    hits = []
    for path in sorted((root / "sae").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = _docstring_nodes(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
                and word.search(node.value)
            ):
                hits.append(f"{path.relative_to(root)}:{node.lineno}: {node.value[:60]!r}")
    return hits


def test_sae_names_no_organism():
    """What ``sae`` needs from the organism (weights, text, data files) comes from a provider."""
    assert not organism_mentions(ROOT)


def _entry_point_dist(tmp_path: Path) -> Path:
    """A ``saelab`` distribution's metadata carrying pyproject.toml's entry points, as
    ``pip install`` writes it: a fresh install, whatever the environment has installed."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    dist = tmp_path / f"saelab-{project['version']}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: saelab\nVersion: {project['version']}\n")
    lines = []
    for group, entries in project.get("entry-points", {}).items():
        lines += [f"[{group}]", *(f"{name} = {value}" for name, value in entries.items()), ""]
    (dist / "entry_points.txt").write_text("\n".join(lines))
    return tmp_path


def test_loading_the_organism_goes_through_its_provider_entry_point(tmp_path):
    """``load_model('organism')`` with nothing but ``sae`` imported: the entry point in
    pyproject.toml registers the provider, and of the organism only its provider module
    (no corpus, no training code) and nothing of a higher layer is imported."""
    code = (
        "import sys; from sae.model import load_model; model, _ = load_model('organism'); "
        "assert model.saelab_source.provider == 'organism', model.saelab_source; "
        "ours = ('organism', 'circuits', 'evals', 'app', 'bench', 'saelab'); "
        "allowed = ('organism', 'organism.provider'); "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ours and m not in allowed); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(_entry_point_dist(tmp_path)), str(ROOT)])}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT, env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]


def test_organism_b_is_a_provider_through_its_entry_point_never_a_hub_name(tmp_path):
    """With nothing but ``sae`` imported, 'organism-b' resolves to its provider: its weights
    when they are in place, else the one-line error naming the rebuild command; never a
    hub download."""
    code = (
        "from sae import providers; from sae.errors import SaelabError; from sae.model import resolve_source; "
        "p = providers.find('organism-b'); assert p is not None and p.model_dir.name == 'weights_b', p; "
        "assert p.files['circuits'].name == 'circuits_b.json'\n"
        "try:\n    src = resolve_source('organism-b'); assert src.kind == 'provider', src\n"
        "except SaelabError as e:\n"
        "    assert str(e).endswith(\"run 'saelab organism train --config configs/organism_b.yaml "
        "--out organism/weights_b'\"), e\n"
        "print('ok')"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(_entry_point_dist(tmp_path)), str(ROOT)])}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT, env=env
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stdout + result.stderr[-2000:]


# ---- the checker itself --------------------------------------------------------------------------


def _tree(root: Path, files: dict[str, str]) -> Path:
    for pkg in _tiers():
        (root / pkg).mkdir(parents=True, exist_ok=True)
        (root / pkg / "__init__.py").touch()
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "__init__.py").touch()
        path.write_text(text)
    return root


def test_the_checker_sees_a_function_level_upward_import(tmp_path):
    root = _tree(
        tmp_path,
        {
            "sae/low.py": "def f():\n    from evals.high import g\n    return g\n",
            "evals/high.py": "def g():\n    pass\n",
        },
    )
    bad = upward(import_graph(root))
    assert [(e.source, e.target, e.how) for e in bad] == [("sae.low", "evals.high", "from")]
    assert bad[0].where == str(Path("sae/low.py")) + ":2"


@pytest.mark.parametrize(
    "call",
    [
        "importlib.import_module('organism.corpus')",
        "import_module('organism.corpus')",
        "importlib.util.find_spec('organism.corpus')",
        "__import__('organism.corpus')",
        "importlib.import_module('.corpus', package='organism')",
    ],
)
def test_the_checker_sees_a_module_named_to_importlib(tmp_path, call):
    root = _tree(
        tmp_path,
        {"sae/low.py": f"import importlib\n\ndef f():\n    return {call}\n", "organism/corpus.py": "X = 1\n"},
    )
    assert [(e.source, e.target) for e in upward(import_graph(root))] == [("sae.low", "organism.corpus")]


def test_the_checker_resolves_relative_imports_and_allows_downward_ones(tmp_path):
    root = _tree(
        tmp_path,
        {
            "evals/a.py": "from . import b\nfrom .sub.c import x\nfrom sae import low\n",
            "evals/b.py": "",
            "evals/sub/c.py": "x = 1\n",
            "sae/low.py": "",
        },
    )
    edges = import_graph(root)
    assert {(e.source, e.target) for e in edges} == {
        ("evals.a", "evals.b"),
        ("evals.a", "evals.sub.c"),
        ("evals.a", "sae.low"),
    }
    assert upward(edges) == []


def test_the_checker_finds_modules_importing_each_other(tmp_path):
    root = _tree(
        tmp_path,
        {
            "circuits/a.py": "from circuits.b import y\nx = 1\n",
            "circuits/b.py": "y = 2\n\ndef f():\n    import circuits.a\n",
            "circuits/c.py": "from circuits.b import y\n",
            "sae/p.py": "from sae import q\n",
            "sae/q.py": "from sae.r import z\n",
            "sae/r.py": "z = 0\n\ndef f():\n    from sae.p import x\n",
        },
    )
    assert cycles(import_graph(root)) == [["circuits.a", "circuits.b"], ["sae.p", "sae.q", "sae.r"]]


def test_a_module_may_import_its_own_package(tmp_path):
    """Python runs a package's ``__init__`` before any of its modules, so a module importing
    its package (say, to have every family registered) adds no dependency."""
    root = _tree(
        tmp_path,
        {
            "sae/arch/__init__.py": "from sae.arch.registry import find\n",
            "sae/arch/registry.py": "def find():\n    import sae.arch\n",
        },
    )
    edges = import_graph(root)
    assert [(e.source, e.target) for e in edges] == [("sae.arch", "sae.arch.registry")]
    assert cycles(edges) == []


def test_the_checker_finds_a_planted_organism_name_in_sae(tmp_path):
    root = _tree(
        tmp_path,
        {
            "sae/low.py": '"""Docstrings may speak of the organism."""\n\n'
            'def f():\n    """Nor here: the organism."""\n    return "organism/weights"\n'
            'OK = "configs/cache_organism.yaml"\n'
        },
    )
    assert organism_mentions(root) == [f"{Path('sae/low.py')}:5: 'organism/weights'"]
