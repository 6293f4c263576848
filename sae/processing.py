"""The weight processing a model was given, and the one an SAE was trained on.

TransformerLens can rewrite a model's weights without changing its function
(``fold_ln``, ``center_writing_weights``, ``center_unembed``, ``fold_value_biases``,
``refactor_factored_attn_matrices``), but some rewrites change the *activations* an SAE
reads: centring removes the mean over d_model of every residual write, so a GPT-2 SAE
trained on a centred model (``gpt2-small-res-jb`` declares ``center_writing_weights``)
sees other inputs on an unprocessed model. SAELens records the processing in
``model_from_pretrained_kwargs`` and trains on ``from_pretrained_no_processing(**kwargs)``:
every option is off unless the kwargs turn it on. saelab's bridges are unprocessed;
``apply_processing`` gives one a processing through TransformerBridge's compatibility mode
(``enable_compatibility_mode``), and ``check_processing`` refuses an SAE whose processing
differs from its model's, so a mismatched splice never happens silently.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from sae.errors import ConfigError

#: ``model_from_pretrained_kwargs`` keys that are not weight processing: they are recorded, never refused
NON_PROCESSING_KWARGS = frozenset(
    {"prepend_bos", "default_prepend_bos", "padding_side", "default_padding_side", "trust_remote_code"}
)


@dataclass(frozen=True)
class Processing:
    """TransformerLens weight processing (all off: the raw Hugging Face model, saelab's default)."""

    fold_ln: bool = False
    center_writing_weights: bool = False
    center_unembed: bool = False
    fold_value_biases: bool = False
    refactor_factored_attn_matrices: bool = False

    @property
    def any(self) -> bool:
        return any(asdict(self).values())

    def describe(self) -> str:
        on = [k for k, v in asdict(self).items() if v]
        return ", ".join(on) if on else "no processing"

    @classmethod
    def from_kwargs(cls, kwargs: dict | None, where: str = "model_from_pretrained_kwargs") -> Processing:
        """The processing SAELens' ``from_pretrained_no_processing(**kwargs)`` gives.

        Unknown keys are refused (one line) rather than ignored: a processing saelab cannot
        reproduce must not be dropped silently. Keys that are not weight processing
        (``prepend_bos`` ...) are skipped here; the loader records them.
        """
        kwargs = dict(kwargs or {})
        known = {f.name for f in fields(cls)}
        values = {}
        for key, value in kwargs.items():
            if key in NON_PROCESSING_KWARGS:
                continue
            if key not in known:
                raise ConfigError(
                    f"{where}: {key!r} is not a model processing saelab can apply (known: {', '.join(sorted(known))})"
                )
            if not isinstance(value, bool):
                raise ConfigError(f"{where}: {key} must be true or false, got {value!r}")
            values[key] = value
        return cls(**values)


NONE = Processing()


def model_processing(model) -> Processing | None:
    """The processing ``model`` (a TransformerBridge) carries: what ``apply_processing`` gave
    it, none for a bridge never processed, None when it was processed outside saelab."""
    recorded = getattr(model, "saelab_processing", None)
    if recorded is not None:
        return recorded
    return None if getattr(model, "_weights_processed", False) else NONE


def apply_processing(model, processing: Processing):
    """Give an unprocessed bridge ``processing`` in place (and return it).

    TransformerBridge processes through ``enable_compatibility_mode``, which also turns on
    TransformerLens' legacy hook aliases; saelab's hook names read the same activations
    either way (a fold_ln bridge's residual stream is unchanged). A bridge that cannot be
    processed so (already processed, an architecture TransformerLens does not process, a
    model without LayerNorm asked to fold or centre it) is one line, never a silent skip.
    """
    current = model_processing(model)
    if current == processing:
        return model
    if current != NONE:
        held = current.describe() if current is not None else "a processing saelab did not record"
        raise ConfigError(f"the model already carries {held}; load a fresh one to give it {processing.describe()}")
    if not processing.any:
        return model
    norm = getattr(model.cfg, "normalization_type", None)
    if (processing.fold_ln or processing.center_writing_weights) and norm not in ("LN", "LNPre"):
        raise ConfigError(
            f"cannot give this model {processing.describe()}: fold_ln and center_writing_weights need "
            f"LayerNorm, and the model normalises with {norm!r}"
        )
    try:
        model.enable_compatibility_mode(disable_warnings=True, **asdict(processing))
    except (RuntimeError, NotImplementedError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"cannot give this model {processing.describe()}: {first}") from None
    model.saelab_processing = processing
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def sae_processing(sae) -> Processing:
    """The processing an SAE needs (none unless its cfg.json asked for one)."""
    return getattr(sae, "processing", None) or NONE


def check_processing(model, sae, what: str = "the SAE") -> None:
    """Refuse to splice ``sae`` into ``model`` when their processings differ (one line)."""
    need = sae_processing(sae)
    have = model_processing(model)
    if have == need:
        return
    held = have.describe() if have is not None else "a processing saelab did not record"
    raise ConfigError(
        f"{what} was trained on a model with {need.describe()}, but this model carries {held}; "
        "load the model with sae.model.load_model_for(sae) (or load_model(..., processing=sae.processing))"
    )


def check_splice(model, sae, hook: str | None = None, what: str = "the SAE") -> None:
    """Everything a splice needs from ``sae`` and ``model``: the processing matches, the hook
    exists on the model and its width is the SAE's d_in. ``hook`` defaults to the hook the
    SAE was saved with (``sae.hook``). For callers that splice (evals, HookedSAETransformer)."""
    from sae.hooks import resolve_hook

    check_processing(model, sae, what)
    hook = hook or getattr(sae, "hook", None)
    if hook is None:
        return
    spec = resolve_hook(model, hook)
    if spec.d_in != sae.cfg.d_in:
        raise ConfigError(f"{what} reads {sae.cfg.d_in}-wide rows but hook {hook!r} of this model is {spec.d_in} wide")
