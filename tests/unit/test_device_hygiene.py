"""Every tensor the circuit methods make is made on a device someone chose.

``saelab circuit --device cuda`` runs the model on the GPU; a tensor made with a bare
``torch.zeros(n)`` lands on torch's default device (the CPU) and meets the model's
activations in a device-mismatch error, or quietly drags work back to the CPU. This test
reads the code the circuit methods run (``circuits/``, and the parts of ``sae/`` they
call: ``tests/device_scope.py``'s ``SCOPE``) and fails on:

- a tensor factory (``torch.zeros``, ``arange``, ``tensor``, ...) without ``device=``;
- a literal CPU device (``device="cpu"``, ``torch.device("cpu")``, ``.to("cpu")``) where
  the allow-list (``tests/device_scope.py``, ``ALLOWED``) does not say why the CPU is meant;
- ``.numpy()`` on a tensor not first brought to the CPU (``.cpu().numpy()``).

The running counterpart, which executes every method with the model's device and
torch's default device apart, is ``tests/integration/test_circuits_device.py``.
"""

from __future__ import annotations

import ast

import pytest
from device_scope import ALLOWED, ROOT, device_problems, files


def test_the_circuit_code_makes_every_tensor_on_a_chosen_device():
    problems = []
    for path in files():
        problems += device_problems(path.read_text(), path.relative_to(ROOT).as_posix())
    assert not problems, "tensors made on torch's default device in the circuit path:\n" + "\n".join(problems)


def test_every_allow_list_entry_still_names_a_real_site():
    """An entry whose site is gone is removed, so the list stays the few places the CPU is meant."""
    sources = {p.relative_to(ROOT).as_posix(): p.read_text() for p in files()}
    for rel, function, _ in ALLOWED:
        assert rel in sources, rel
        tree = ast.parse(sources[rel])
        names = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
        assert function in names, f"{rel}: no function {function}()"


@pytest.mark.parametrize(
    "source, expected",
    [
        ("import torch\ndef f(x):\n    return x + torch.arange(3)\n", "torch.arange(...) without device="),
        ("import torch\ndef f(x):\n    return torch.tensor([1, 2])\n", "torch.tensor(...) without device="),
        ("import torch\ndef f(x):\n    return torch.zeros(3, device='cpu')\n", "device='cpu'"),
        ("import torch\ndef f(x):\n    return x.to('cpu')\n", ".to('cpu')"),
        ("import torch\ndef f(x):\n    return x.to(device=torch.device('cpu'))\n", ".to('cpu')"),
        ("def f(x, device='cpu'):\n    return x\n", "a CPU default"),
        ("def f(x):\n    return x.double().numpy()\n", "x.double().numpy() without .cpu() first"),
        ("import torch\ndef f():\n    return torch.Generator().manual_seed(0)\n", "torch.Generator(...)"),
    ],
)
def test_the_checker_flags_each_kind_of_site(source, expected):
    problems = device_problems(source, "circuits/example.py")
    assert len(problems) == 1 and expected in problems[0], problems


@pytest.mark.parametrize(
    "source",
    [
        "import torch\ndef f(x):\n    return x + torch.arange(3, device=x.device)\n",
        "import torch\ndef f(x):\n    return torch.zeros_like(x)\n",  # follows its input
        "def f(x):\n    return x.detach().cpu().numpy()\n",
        "def f(x):\n    return x.double().cpu().numpy()\n",
        "def f(x, device=None):\n    return x\n",
    ],
)
def test_the_checker_passes_device_correct_code(source):
    assert device_problems(source, "circuits/example.py") == []


def test_module_constructors_are_exempt_only_in_the_sae_families():
    source = "import torch\nclass M:\n    def __init__(self):\n        self.w = torch.zeros(3)\n"
    assert device_problems(source, "sae/architectures/example.py") == []
    assert device_problems(source, "circuits/example.py")
