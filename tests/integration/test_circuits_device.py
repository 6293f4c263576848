"""The circuit methods run where the model runs, checked on a machine without a GPU.

On a GPU the bug looks like this: the model is on CUDA, a tensor made with no device
(``torch.arange(n)``) lands on torch's default device, the CPU, and the two meet in a
device-mismatch error (or the work silently moves to the CPU). Here the same split is made
the other way round: the model stays on the CPU, and every tensor factory that the circuit
code calls without naming a device makes its tensor on ``meta``, torch's device without
data. A method that makes even one tensor off the model's device then fails (meta and CPU
tensors do not mix in an op; a meta tensor has no value to read) or, where torch lets a
meta index through, gives scores that differ from the plain run's; so every method must
give exactly the plain run's scores under it.

It is stricter than CUDA in one way: CUDA lets a 0-d CPU tensor or CPU indices meet a
CUDA tensor, this does not, so code that passes here names its devices everywhere. What
it cannot see, a literal CPU device or ``.numpy()`` without ``.cpu()``, the static check
``tests/unit/test_device_hygiene.py`` covers; both read ``tests/device_scope.py``'s ``SCOPE``.
"""

from __future__ import annotations

import functools
import math
import sys

import pytest
import torch
from device_scope import CONSTRUCTOR_DIRS, CONSTRUCTORS, ROOT, SCOPE
from device_scope import FACTORIES as ALL_FACTORIES

from circuits.methods import MethodConfig, run_method

#: tensor factories whose tensors land on torch's default device when no device is named
#: (the static check's list; a Generator is not a tensor)
FACTORIES = tuple(sorted(ALL_FACTORIES - {"Generator"}))

_SCOPE = tuple(str(ROOT / s) + ("/" if (ROOT / s).is_dir() else "") for s in SCOPE)
_CONSTRUCTOR_DIRS = tuple(str(ROOT / d) for d in CONSTRUCTOR_DIRS)


def _off_device(factory):
    """``factory``, but a call from the circuit code that names no device makes its tensor
    on ``meta`` (module constructors of the SAE families excepted, as in the static check:
    their owner moves them)."""

    @functools.wraps(factory)
    def make(*args, **kwargs):
        if kwargs.get("device") is None:
            caller = sys._getframe(1).f_code
            if caller.co_filename.startswith(_SCOPE) and not (
                caller.co_name in CONSTRUCTORS and caller.co_filename.startswith(_CONSTRUCTOR_DIRS)
            ):
                kwargs["device"] = "meta"
        return factory(*args, **kwargs)

    return make


def set_apart(monkeypatch) -> None:
    """From here to the end of the test, the circuit code's default device is not the model's."""
    for name in FACTORIES:
        monkeypatch.setattr(torch, name, _off_device(getattr(torch, name)))


def _same(a: dict | None, b: dict | None) -> bool:
    """Equal scores, each a Python float (what the results JSON can hold), NaN equal to NaN."""
    if a is None or b is None:
        return a is b
    if not all(type(v) is float for v in (*a.values(), *b.values())):
        return False
    return a.keys() == b.keys() and all(a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])) for k in a)


SMALL = {"n_prompts": 2}

#: run_method end to end: prompts built on the model's device, scored there, floats out
#: (node patching is left out: 42 passes, and it makes no tensor of its own; the static
#: check covers it)
CASES = [
    ("ioi", "mean-diff"),  # IOI prompts and the paper's IOI negatives (ioi.paper_negatives)
    ("greater-than", "eap"),  # greater-than prompts, its metric, gradients
]


def test_the_redirect_catches_a_tensor_made_off_the_models_device(monkeypatch):
    """The check itself: code in scope that makes a tensor without a device fails here,
    the same code naming the model's device passes."""
    from circuits.discrete_sae import _pool

    set_apart(monkeypatch)
    result = torch.ones(2, 3, 1, 1)
    lengths = torch.tensor([3, 2], device=result.device)
    assert torch.arange(3).device.type == "cpu"  # code outside the circuit path is left alone
    pooled = _pool(result, lengths, "mean")  # names result.device: passes
    assert pooled.device == result.device and torch.equal(pooled, torch.ones(2, 1, 1, device=result.device))

    code = compile("def bad(x):\n    return x + torch.arange(x.shape[0])\n", str(ROOT / "circuits" / "x.py"), "exec")
    scope = {"torch": torch}
    exec(code, scope)
    with pytest.raises(RuntimeError, match="meta"):
        scope["bad"](torch.ones(3))


@pytest.mark.parametrize("task, method", CASES)
def test_every_method_runs_where_the_model_runs(organism, monkeypatch, task, method):
    model, tok = organism
    cfg = MethodConfig(**SMALL)
    plain = run_method(model, tok, task, method, cfg)
    set_apart(monkeypatch)
    apart = run_method(model, tok, task, method, cfg)
    assert _same(apart.node_scores, plain.node_scores)
    assert _same(apart.edge_scores, plain.edge_scores)


@pytest.mark.parametrize(
    "task, family",
    [("ioi", None), ("greater-than", "gsae")],  # the paper's SAE; a registry family that reads gradients
)
def test_the_discrete_sae_finder_runs_where_the_model_runs(organism, monkeypatch, task, family):
    """The method as ``run_method`` runs it, with 20 epochs in place of the paper's 500."""
    from circuits.discrete_sae import discrete_sae_circuit
    from circuits.methods import paper_contrast
    from sae.model import model_device

    model, tok = organism

    def run():
        batch = paper_contrast(tok, task, 3, 0, model_device(model))
        return discrete_sae_circuit(model, batch, n_train=4, family=family, n_codes=16, k=2, epochs=20)

    plain = run()
    set_apart(monkeypatch)
    apart = run()
    assert _same(apart.node_scores, plain.node_scores) and _same(apart.pair_scores, plain.pair_scores)
    assert _same(apart.edge_node_scores, plain.edge_node_scores) and apart.codebook == plain.codebook


def test_edge_patching_and_acdc_run_where_the_model_runs(organism, monkeypatch):
    """ACDC's passes are ``EdgePatcher`` calls (``circuits.acdc`` makes no tensors itself)."""
    from circuits.acdc import acdc
    from circuits.patching import EdgePatcher
    from circuits.tasks import ioi
    from sae.model import model_device

    model, tok = organism

    def run():
        batch = ioi.make_batch(tok, 2, seed=0, device=model_device(model))
        patcher = EdgePatcher(model, batch, ioi.logit_diff, metric="kl")
        edges = patcher.graph.edges
        found = acdc(patcher, tau=0.9)
        return patcher.metric(edges[:40]), patcher.task_recovered(edges[::50]), found.kept

    plain = run()
    set_apart(monkeypatch)
    assert run() == plain


def test_attention_sae_method_runs_where_the_model_runs(organism, monkeypatch, tmp_path):
    """Trained once (tiny), then scored with the SAEs loaded on the model's device."""
    model, tok = organism
    cfg = MethodConfig(**SMALL, attn_sae_dir=str(tmp_path / "saes"), attn_sae_tokens=8192)
    plain = run_method(model, tok, "ioi", "attn-sae", cfg)
    set_apart(monkeypatch)
    apart = run_method(model, tok, "ioi", "attn-sae", cfg)
    assert _same(apart.node_scores, plain.node_scores)
    assert apart.details["top_features"] == plain.details["top_features"]


def test_mean_ablation_runs_where_the_model_runs(organism, monkeypatch):
    """The faithfulness ground truth's ablation (template means on the model's device)."""
    from circuits.ablation import MeanAblator
    from circuits.tasks import ioi
    from sae.model import model_device

    model, tok = organism
    ablate = [(0, 1), (2, 3), (1, None)]
    batch = ioi.make_batch(tok, 6, seed=1, device=model_device(model))
    plain = MeanAblator(model, batch, ioi.logit_diff).run(ablate)
    set_apart(monkeypatch)
    batch = ioi.make_batch(tok, 6, seed=1, device=model_device(model))
    assert MeanAblator(model, batch, ioi.logit_diff).run(ablate) == plain


def test_the_attention_sae_trainer_is_told_the_models_device():
    """attn-sae's per-layer SAEs train and load where the model runs, read off the model."""
    from circuits.attn_sae import layer_sae_config

    class OnMeta(torch.nn.Module):
        cfg = type("cfg", (), {"n_layers": 2})()

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1, device="meta"))

    cfg = layer_sae_config(OnMeta(), "organism", 1000)
    assert cfg.trainer.device == "meta"
    assert [s.hook for s in cfg.saes] == ["blocks.0.attn.hook_z", "blocks.1.attn.hook_z"]


def test_circuit_on_a_device_this_torch_lacks_is_one_line(capsys):
    from saelab.cli import main

    missing = "cuda" if not torch.cuda.is_available() else f"cuda:{torch.cuda.device_count()}"
    code = main(["circuit", "ioi", "--quiet", "--device", missing])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--device" in err and "Traceback" not in err
    code = main(["circuit", "ioi", "--quiet", "--device", "tpu9"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "not a torch device" in err
