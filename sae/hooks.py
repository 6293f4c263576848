"""Hook points: list them, validate them, and read activations at them.

Names are TransformerLens names. Attention internals (``attn.hook_z/q/k/v``) are offered
two ways: the bare name means all heads concatenated to ``n_heads * d_head`` (as
attention-output SAEs use them), and ``name[h]`` means head ``h`` alone.
"""

from __future__ import annotations

import difflib
import re
import weakref
from dataclasses import dataclass

import torch
from einops import rearrange

from sae.errors import ConfigError, SaelabError

BLOCK_HOOKS = (
    "hook_resid_pre",
    "hook_resid_mid",
    "hook_resid_post",
    "hook_attn_out",
    "hook_mlp_out",
    "mlp.hook_in",  # the MLP's literal input (after ln2's gain and bias): a transcoder's input
    "mlp.hook_pre",
    "mlp.hook_post",
    "attn.hook_q",
    "attn.hook_k",
    "attn.hook_v",
    "attn.hook_z",
)
_NAME = re.compile(r"^blocks\.(\d+)\.(.+?)(?:\[(\d+)\])?$")
_SHAPES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_ORDER: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class HookSpec:
    """A validated hook point.

    ``tl_name`` is the TransformerLens hook; ``head`` selects one head of a per-head hook
    (None: all heads concatenated); ``shape`` is the per-token shape TransformerLens
    gives (``(d,)`` or ``(n_heads, d_head)``); ``d_in`` the width of one row read here.
    """

    name: str
    tl_name: str
    layer: int
    site: str
    head: int | None
    shape: tuple[int, ...]

    @property
    def per_head(self) -> bool:
        return len(self.shape) == 2

    @property
    def d_in(self) -> int:
        if not self.per_head:
            return self.shape[0]
        return self.shape[1] if self.head is not None else self.shape[0] * self.shape[1]

    def read(self, act: torch.Tensor) -> torch.Tensor:
        """``[..., *shape]`` activation → ``[..., d_in]`` rows for this hook point."""
        if not self.per_head:
            return act
        if self.head is not None:
            return act[..., self.head, :]
        return rearrange(act, "... head d_head -> ... (head d_head)")

    def write(self, act: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """The inverse of ``read``: put ``[..., d_in]`` rows back into a hook activation."""
        if not self.per_head:
            return rows
        if self.head is not None:
            out = act.clone()
            out[..., self.head, :] = rows
            return out
        return rearrange(rows, "... (head d_head) -> ... head d_head", head=self.shape[0])


def _probe_shapes(model) -> dict[str, tuple[int, ...]]:
    """Per-token shapes of every block hook, read from a 2-token forward pass (memoised),
    which also records the order the hooks run in (``hook_order``)."""
    cached = _SHAPES.get(model)
    if cached is not None:
        return cached
    available = set(model.hook_dict)
    present = [
        name
        for layer in range(model.cfg.n_layers)
        for site in BLOCK_HOOKS
        if (name := f"blocks.{layer}.{site}") in available
    ]
    device = next(model.parameters()).device
    tokens = torch.zeros((1, 2), dtype=torch.long, device=device)
    seen: dict[str, tuple[int, ...]] = {}

    def record(name: str):
        def hook(act, hook=None):
            seen.setdefault(name, tuple(act.shape))
            return act

        return hook

    with torch.no_grad():
        model.run_with_hooks(tokens, fwd_hooks=[(n, record(n)) for n in present])
    # a hook's activation is [batch, position, ...]; one that is not (2 positions) has no rows per token
    shapes = {name: shape[2:] for name, shape in seen.items() if shape[:2] == (1, 2)}
    _SHAPES[model] = shapes
    _ORDER[model] = {name: i for i, name in enumerate(seen)}
    return shapes


def hook_order(model) -> dict[str, int]:
    """TransformerLens hook name → its rank in the order a forward pass runs the block hooks."""
    _probe_shapes(model)
    return _ORDER[model]


def list_hooks(model, per_head: bool = True) -> dict[str, tuple[int, ...]]:
    """Every hook point saelab can read on ``model``, mapped to the row shape read there."""
    out: dict[str, tuple[int, ...]] = {}
    for name, shape in _probe_shapes(model).items():
        if len(shape) == 2:
            out[name] = (shape[0] * shape[1],)
            if per_head:
                for h in range(shape[0]):
                    out[f"{name}[{h}]"] = (shape[1],)
        else:
            out[name] = shape
    return out


def resolve_hook(model, name: str) -> HookSpec:
    """Validate ``name`` against ``model``; an unknown name gets the nearest valid ones."""
    shapes = _probe_shapes(model)
    match = _NAME.match(name)
    tl_name = f"blocks.{match.group(1)}.{match.group(2)}" if match else name
    if not match or tl_name not in shapes:
        near = difflib.get_close_matches(name, list(list_hooks(model, per_head=False)), n=3, cutoff=0.5)
        hint = f"; nearest: {', '.join(near)}" if near else ""
        raise SaelabError(f"unknown hook point {name!r} for this model{hint}")
    shape = shapes[tl_name]
    head = int(match.group(3)) if match.group(3) is not None else None
    if head is not None:
        if len(shape) != 2:
            raise SaelabError(f"hook point {tl_name!r} has no heads; drop the [{head}]")
        if head >= shape[0]:
            raise SaelabError(f"hook point {name!r}: head {head} out of range (the layer has {shape[0]} heads)")
    return HookSpec(name=name, tl_name=tl_name, layer=int(match.group(1)), site=match.group(2), head=head, shape=shape)


def hook_name(layer: int, site: str, head: int | None = None) -> str:
    return f"blocks.{layer}.{site}" + (f"[{head}]" if head is not None else "")


def resolve_pair(model, hook: str, hook_out: str) -> tuple[HookSpec, HookSpec]:
    """Validate a transcoder's input and output hooks; one-line errors for a pair that cannot work.

    A transcoder replaces the computation between two hooks token by token, so: both hooks
    exist; they differ; the output runs after the input in the forward pass (so a splice can
    read the input before it writes the output); and their rows index the same positions.
    Every hook read here has one row per token, but a single head's rows (``hook_z[h]``) are
    not a function of the same units as whole-position rows, nor as another head's: the two
    hooks must both read whole positions, or both the same head.
    """
    try:
        spec_in, spec_out = resolve_hook(model, hook), resolve_hook(model, hook_out)
    except SaelabError as e:  # a config error here: exit 2 like the others
        raise ConfigError(f"transcoder {hook} -> {hook_out}: {e}") from None
    if spec_in.name == spec_out.name:
        raise ConfigError(f"hook_out {hook_out!r} is the input hook; an SAE has no hook_out")
    order = hook_order(model)
    if order[spec_out.tl_name] <= order[spec_in.tl_name]:
        raise ConfigError(
            f"hook_out {hook_out!r} does not run after hook {hook!r}: a transcoder maps an earlier hook to a later one"
        )
    if spec_in.head != spec_out.head:

        def what(s: HookSpec) -> str:
            return f"head {s.head} of {s.tl_name}" if s.head is not None else f"whole positions of {s.tl_name}"

        raise ConfigError(
            f"hook {hook!r} and hook_out {hook_out!r} read different positions ({what(spec_in)} vs "
            f"{what(spec_out)}): a transcoder's input and output rows must be the same units"
        )
    return spec_in, spec_out
