"""The family registry: ``cfg.json["architecture"]`` → everything the lab knows about a family.

Each family file defines its config and module and ends with one ``register(Family(...))``;
every consumer (trainer, saving, sweeps, evals, explorer, CLI choices) asks the registry
instead of keeping its own list of names or branching on one. Registration order is the
order families are listed (and built, so it fixes which random draws each one gets):
``sae/architectures/__init__.py`` imports the built-in family files in that order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sae.errors import ConfigError, SaelabError

if TYPE_CHECKING:
    from sae.architectures.base import SAEConfig, SparseAutoencoder


@dataclass(frozen=True)
class Coefficient:
    """A sparsity penalty's weight and its schedule (SAELens' ``get_coefficients``).

    The weight is the config field ``field``; it ramps up linearly from 0 over the first
    ``warmup_field`` fraction of training (SAELens' ``l1_warm_up_steps``, as a fraction so
    the same config serves any budget). ``label`` names it in variant names (``relu_l1=4``).
    """

    field: str
    label: str
    warmup_field: str | None = None

    def scale(self, cfg: SAEConfig, step: int, total_steps: int) -> float:
        """The warm-up factor at 0-based ``step`` of ``total_steps``: min(1, (step+1)/warm-up steps)."""
        warm = (getattr(cfg, self.warmup_field) if self.warmup_field else 0.0) * total_steps
        return min(1.0, (step + 1) / warm) if warm > 0 else 1.0


@dataclass(frozen=True)
class Family:
    """One SAE family as every consumer sees it.

    - ``sae_class``: the module; its ``config_class`` is the family's typed config.
    - ``saelens_architecture``: the ``architecture`` SAELens writes for the saved inference
      form ("standard", "topk", "jumprelu"); ``inference_form``: the registered family that
      form loads as (batch-level rules save as a JumpReLU; None: the family itself).
    - ``trainable``: inference-only forms (JumpReLU) are not.
    - ``coefficient``: the sparsity penalty whose weight sets L0 (ReLU's L1), if any;
      families without one have a k budget (``KConfig``).
    - ``sparse_kernel``: training goes through the fused sparse kernels (``sae.kernels``) under
      ``kernel: sparse`` (threshold rules, JumpReLU and Gated, while few enough entries fire),
      so ``kernel: dense`` is a distinct reference path (``bench.parity`` trains both).
    - ``needs_gradients``: training reads g = ∂L/∂x with each row (gradient SAEs).
    """

    name: str
    sae_class: type[SparseAutoencoder]
    saelens_architecture: str
    inference_form: str | None = None
    trainable: bool = True
    coefficient: Coefficient | None = None
    sparse_kernel: bool = True
    needs_gradients: bool = False

    @property
    def config_class(self) -> type[SAEConfig]:
        return self.sae_class.config_class

    @property
    def form(self) -> str:
        """The registered name of the saved inference form."""
        return self.inference_form or self.name

    @property
    def has_k(self) -> bool:
        """Whether L0 is set directly by a budget of k latents per token."""
        return "k" in self.config_class.model_fields

    def config_at_l0(
        self, l0: int, d_sae: int | None = None, coefficients: Sequence[float] = ()
    ) -> list[tuple[str, dict]]:
        """``(variant label, config fields)`` that aim this family at L0 ``l0`` with ``d_sae`` latents.

        A k-family is aimed by construction: one variant, k = min(l0, d_sae), labelled by the
        family name. A coefficient family's L0 follows from its penalty weight and the data's
        scale, with no formula: it gets one variant per weight of ``coefficients`` (labelled
        ``<name>_<label>=<weight>``), trained side by side, and the caller keeps the one whose
        measured L0 is nearest ``l0``; with no weights, the family's default weight.
        """
        if self.has_k:
            return [(self.name, {"k": l0 if d_sae is None else min(l0, d_sae)})]
        if self.coefficient is None:
            raise SaelabError(f"SAE family {self.name!r} cannot be aimed at an L0 (no k and no sparsity coefficient)")
        if not coefficients:
            return [(self.name, {})]
        c = self.coefficient
        return [(f"{self.name}_{c.label}={w:g}", {c.field: w}) for w in coefficients]


REGISTRY: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Add ``family``; a name registered twice is an error (two files claiming one cfg.json name)."""
    if family.name in REGISTRY:
        raise SaelabError(f"SAE family {family.name!r} is already registered")
    default = family.config_class.model_fields["architecture"].default
    if default != family.name:
        raise SaelabError(f"SAE family {family.name!r}: its config's architecture defaults to {default!r}")
    if family.inference_form is None and from_saelens(family.saelens_architecture) is not None:
        raise SaelabError(
            f"SAE family {family.name!r}: SAELens {family.saelens_architecture!r} already loads as "
            f"{from_saelens(family.saelens_architecture).name!r}"
        )
    REGISTRY[family.name] = family
    # the module reads its entry, and mirrors two facts that code holding only a class asks for
    family.sae_class.family = family
    family.sae_class.architecture = family.name
    family.sae_class.needs_gradients = family.needs_gradients
    return family


def unregister(name: str) -> None:
    """Remove a family (tests that register one of their own)."""
    REGISTRY.pop(name, None)


def _load() -> None:
    import sae.architectures  # noqa: F401 - registers every built-in family


def family(name: str) -> Family:
    _load()
    try:
        return REGISTRY[name]
    except KeyError:
        raise SaelabError(f"unknown SAE architecture {name!r}; known: {', '.join(REGISTRY)}") from None


def families(trainable: bool | None = None) -> list[Family]:
    """Every registered family in registration order (only the trainable ones, or only the others)."""
    _load()
    return [f for f in REGISTRY.values() if trainable is None or f.trainable == trainable]


def trainable() -> tuple[str, ...]:
    """Names of the trainable families, in registration order."""
    return tuple(f.name for f in families(trainable=True))


def trainable_family(name: str, what: str = "") -> Family:
    """The trainable family ``name``, or a one-line error naming the known ones."""
    _load()
    entry = REGISTRY.get(name)
    if entry is None or not entry.trainable:
        raise ConfigError(f"{what}{name!r} is not a trainable family ({', '.join(trainable())})")
    return entry


def sae_class(name: str) -> type:
    return family(name).sae_class


def config_class(name: str) -> type:
    return family(name).config_class


def from_saelens(architecture: str) -> Family | None:
    """The family an SAE saved by SAELens with this ``architecture`` loads as (None: none does).

    A transcoder's name (``transcoder``, ``skip_transcoder``, ``jumprelu_transcoder``, ...)
    gives the family of the same rule; ``parse_saelens_transcoder`` says whether it is one
    and whether it has a skip connection (config fields ``d_out`` and ``skip``).
    """
    _load()
    parsed = parse_saelens_transcoder(architecture)
    if parsed is not None:
        architecture = parsed[0]
    for entry in REGISTRY.values():
        if entry.form == entry.name and entry.saelens_architecture == architecture:
            return entry
    return None


def saelens_architectures() -> list[str]:
    """SAELens architecture names saelab loads (transcoder names included)."""
    _load()
    names = {f.saelens_architecture for f in REGISTRY.values() if f.form == f.name}
    return sorted(names | {saelens_transcoder(n, skip) for n in names for skip in (False, True)})


# -- transcoders ---------------------------------------------------------------------
# A transcoder is not a family: any family trains as one (a run's ``hook_out``; the config's
# ``d_out`` and ``skip``). Its saved form is the family's saved form renamed the way SAELens
# names transcoders: "standard" → "transcoder" / "skip_transcoder", "jumprelu" →
# "jumprelu_transcoder" / "jumprelu_skip_transcoder" (SAELens 6.54's four classes); any other
# form F → "F_transcoder" / "F_skip_transcoder" (e.g. "topk_transcoder", which SAELens 6.54
# does not have: such a file loads in saelab only).

TRANSCODER = "transcoder"


def saelens_transcoder(architecture: str, skip: bool) -> str:
    """The SAELens name of a transcoder whose rule saves as ``architecture`` as an SAE."""
    prefix = "" if architecture == "standard" else f"{architecture}_"
    return f"{prefix}{'skip_' if skip else ''}{TRANSCODER}"


def parse_saelens_transcoder(architecture: str) -> tuple[str, bool] | None:
    """``(the SAE form's SAELens name, skip)`` of a transcoder's SAELens name; None for an SAE's."""
    if not architecture.endswith(TRANSCODER):
        return None
    head = architecture.removesuffix(TRANSCODER)
    skip = head.endswith("skip_") or head == "skip_"
    head = head.removesuffix("skip_").removesuffix("_")
    return (head or "standard"), skip


def saved_architecture(sae: SparseAutoencoder) -> str:
    """The SAELens ``architecture`` a module saves as (a transcoder's name when it is one)."""
    name = sae.family.saelens_architecture
    return saelens_transcoder(name, sae.cfg.skip) if sae.cfg.transcoder else name
