"""What the device checks read: the code ``saelab circuit`` runs, and the static checker.

Shared by ``unit/test_device_hygiene.py`` (the static check) and
``integration/test_circuits_device.py`` (the running one), so both cover the same code.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: The code ``saelab circuit`` runs: every circuits module, and what it calls in ``sae``.
SCOPE = (
    "circuits",
    "sae/architectures",  # the SAE families the discrete-SAE codebook and attn-sae SAEs run
    "sae/harvest.py",  # attn-sae reads hook_z through the harvester
    "sae/hooks.py",
    "sae/model.py",
    "sae/saving.py",  # attn-sae loads its per-layer SAEs
    "sae/loading.py",
    "sae/trainer.py",  # attn-sae trains its per-layer SAEs
)

FACTORIES = {
    "zeros",
    "ones",
    "empty",
    "full",
    "arange",
    "tensor",
    "as_tensor",
    "randn",
    "rand",
    "randint",
    "randperm",
    "eye",
    "linspace",
    "logspace",
    "triu_indices",
    "tril_indices",
    "Generator",
}

#: Module constructors build their parameters on torch's default device; whoever owns the
#: module moves it where it runs (the trainer to ``trainer.device``, the codebook to its
#: samples' device), so factories there need no device.
CONSTRUCTORS = {"__init__", "reset_parameters", "init_directions"}  # init_directions: reset_parameters' shared half
CONSTRUCTOR_DIRS = ("sae/architectures/",)

#: (file, function, what) → why the CPU (or torch's default device) is meant there.
ALLOWED = {
    # the SAE's training prompts are drawn from a seeded CPU generator, so the same prompts
    # are drawn whatever device the model runs on; the indices move to the model's device
    ("circuits/discrete_sae.py", "discrete_sae_circuit", "Generator"): "seeded draw, identical on every device",
    ("circuits/discrete_sae.py", "discrete_sae_circuit", "randperm"): "seeded draw, identical on every device",
    # a checkpoint's optimizer scalars are written to a safetensors file from the host
    ("sae/trainer.py", "state_dict", "tensor"): "host copy for the checkpoint file",
    # SAEs load on the CPU unless told otherwise (a library default, overridden by every caller
    # on the circuit path: attn-sae passes the model's device)
    ("sae/saving.py", "load_sae", "device"): "public default; circuit callers pass the model's device",
    ("sae/loading.py", "load_sae", "device"): "public default; circuit callers pass the model's device",
    ("sae/model.py", "wrap", "device"): "public default: --device / the caller chooses",
    ("sae/model.py", "load_model", "device"): "public default: --device / the caller chooses",
    ("sae/model.py", "load_model_for", "device"): "public default: --device / the caller chooses",
    ("sae/model.py", "random_model", "device"): "public default: --device / the caller chooses",
}


def _is_cpu(node: ast.AST) -> bool:
    """A literal naming the CPU: ``"cpu"`` or ``torch.device("cpu")``."""
    if isinstance(node, ast.Constant) and node.value == "cpu":
        return True
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "device"
        and bool(node.args)
        and _is_cpu(node.args[0])
    )


def _chain_has_cpu(node: ast.AST) -> bool:
    """Does the receiver of a call chain pass through ``.cpu()`` or ``.to("cpu")``?"""
    while isinstance(node, ast.Call | ast.Attribute | ast.Subscript):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "cpu" or (node.func.attr == "to" and node.args and _is_cpu(node.args[0])):
                return True
            node = node.func.value
        elif isinstance(node, ast.Call):
            node = node.func
        else:
            node = node.value
    return False


class _Finder(ast.NodeVisitor):
    def __init__(self, rel: str):
        self.rel, self.stack, self.problems = rel, [], []

    def visit_FunctionDef(self, node):
        self.stack.append(node.name)
        for default in [*node.args.defaults, *node.args.kw_defaults]:
            if default is not None and _is_cpu(default):
                self._flag(node, "device", "a CPU default for a device argument")
        self.generic_visit(node)
        self.stack.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def _flag(self, node, what: str, message: str) -> None:
        function = self.stack[-1] if self.stack else "<module>"
        if (self.rel, function, what) not in ALLOWED:
            self.problems.append(f"{self.rel}:{node.lineno} in {function}(): {message}")

    def visit_Call(self, node: ast.Call):
        func = node.func
        keywords = {k.arg: k.value for k in node.keywords}
        if (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id == "torch"
            and func.attr in FACTORIES
        ):
            in_constructor = self.stack and self.stack[-1] in CONSTRUCTORS and self.rel.startswith(CONSTRUCTOR_DIRS)
            if "device" not in keywords and not in_constructor:
                self._flag(node, func.attr, f"torch.{func.attr}(...) without device=")
            elif "device" in keywords and _is_cpu(keywords["device"]):
                self._flag(node, func.attr, f"torch.{func.attr}(..., device='cpu')")
        if isinstance(func, ast.Attribute) and func.attr == "to":
            target = keywords.get("device", node.args[0] if node.args else None)
            if target is not None and _is_cpu(target):
                self._flag(node, "to", ".to('cpu')")
        if isinstance(func, ast.Attribute) and func.attr == "numpy" and not _chain_has_cpu(func.value):
            self._flag(node, "numpy", f"{ast.unparse(func.value)}.numpy() without .cpu() first")
        self.generic_visit(node)


def device_problems(source: str, rel: str) -> list[str]:
    finder = _Finder(rel)
    finder.visit(ast.parse(source))
    return finder.problems


def files() -> list[Path]:
    out = []
    for entry in SCOPE:
        path = ROOT / entry
        out += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return out
