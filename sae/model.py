"""Load a language model as a TransformerLens ``TransformerBridge``, offline-safe.

One path for every model: a model provider's name (``"organism"``: the weights a
registered provider ships, see ``sae.providers``), a local Hugging Face model directory,
or a hub name (``gpt2``, ``EleutherAI/pythia-70m``). A hub name that is neither cached
nor reachable fails at once with one line instead of hanging in retries.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from pickle import UnpicklingError  # the exception type only: nothing here unpickles
from urllib.parse import urlparse

import torch

from sae import providers
from sae.errors import SaelabError

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return DTYPES[dtype]
    except KeyError:
        raise SaelabError(f"unknown dtype {dtype!r}; use one of {sorted(set(DTYPES))}") from None


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from: ``kind`` is ``provider`` (then ``provider`` names it),
    ``local``, ``hub`` or ``random``; ``location`` is its directory or hub name."""

    kind: str
    location: str
    provider: str | None = None


def resolve_source(name_or_dir: str | os.PathLike) -> ModelSource:
    name = str(name_or_dir)
    provider = providers.find(name)
    if provider is not None:
        path = provider.model_dir
        if not (path / "config.json").is_file():
            hint = f"; run '{provider.rebuild}'" if provider.rebuild else ""
            raise SaelabError(f"the {provider.name} weights are missing from {path}{hint}")
        return ModelSource("provider", str(path), provider.name)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise SaelabError(f"{path}: not a Hugging Face model directory (no config.json)")
        return ModelSource("local", str(path))
    looks_like_path = name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep + os.sep in name
    if looks_like_path or path.exists():
        raise SaelabError(f"{name}: no such model directory")
    return ModelSource("hub", name)


def _hub_endpoint() -> tuple[str, int]:
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    return url.hostname or "huggingface.co", url.port or (443 if url.scheme != "http" else 80)


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub answers a TCP connect within ``timeout`` (DNS included)."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    result: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection(_hub_endpoint(), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)  # getaddrinfo ignores socket timeouts
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def _cached_on_disk(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub ships with transformers
        return False
    hit = try_to_load_from_cache(repo_id, "config.json")
    return isinstance(hit, str)


def load_hf(source: ModelSource, dtype: torch.dtype):
    """The Hugging Face causal LM and tokenizer behind ``source``, eager attention."""
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one line per problem on stderr, not loading bars
    hf_logging.set_verbosity_error()
    kwargs: dict = {}
    if source.kind == "hub":
        if _cached_on_disk(source.location):
            kwargs["local_files_only"] = True
        elif not hub_reachable():
            raise SaelabError(
                f"model {source.location!r} is not in the local Hugging Face cache and the hub is "
                "unreachable (offline); download it once with network access or pass a local model directory"
            )
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.location, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(
            source.location, dtype=dtype, attn_implementation="eager", **kwargs
        )
    except UnpicklingError:  # transformers' torch.load(weights_only=True) refused a pickled object
        raise SaelabError(
            f"cannot load model {source.location!r}: its pickled weights file holds objects other "
            "than tensors; refused unread (use a safetensors copy)"
        ) from None
    except (OSError, ValueError, SafetensorError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SaelabError(f"cannot load model {source.location!r}: {first}") from None
    return model.eval(), tokenizer


def wrap(hf_model, tokenizer, name: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """Wrap an in-memory Hugging Face model in a ``TransformerBridge`` (no hub access)."""
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoTokenizer

    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    hf_model = hf_model.to(device=device, dtype=dtype).eval()
    with tempfile.TemporaryDirectory() as tmp:
        if not tokenizer.name_or_path:
            # TransformerLens re-reads the tokenizer from its path (to add BOS handling), so
            # an in-memory tokenizer gets one for the duration of the boot.
            tokenizer.save_pretrained(tmp)
            tokenizer = AutoTokenizer.from_pretrained(tmp)
        bridge = TransformerBridge.boot_transformers(
            name, hf_model=hf_model, tokenizer=tokenizer, device=device, dtype=dtype
        )
    bridge.eval()
    for p in bridge.parameters():
        p.requires_grad_(False)
    return bridge


def load_model(
    name_or_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = torch.float32,
    processing=None,
):
    """``(bridge, tokenizer)`` for a provider's model (the default provider's when None), a
    local model directory or a hub name.

    ``processing`` (``sae.processing.Processing``, or a ``model_from_pretrained_kwargs``
    dict) gives the model TransformerLens weight processing through compatibility mode;
    the default is none, the raw model. Parameters are frozen (``requires_grad=False``);
    gradients with respect to activations still flow, which is what gradient SAEs and
    attribution need.
    """
    from sae.processing import Processing, apply_processing

    if isinstance(processing, dict):
        processing = Processing.from_kwargs(processing)
    dtype = parse_dtype(dtype)
    source = resolve_source(providers.default_name() if name_or_dir is None else name_or_dir)
    hf_model, tokenizer = load_hf(source, dtype)
    bridge = wrap(hf_model, tokenizer, source.location, device=device, dtype=dtype)
    bridge.saelab_source = source
    if processing is not None:
        apply_processing(bridge, processing)
    return bridge, tokenizer


def model_device(model) -> torch.device:
    """Where ``model`` runs: its first parameter's device. Every tensor that meets the
    model's activations is made there; nothing else decides a device."""
    return next(model.parameters()).device


def hub_model_name(name: str) -> str:
    """The hub name of a model an SAE names (SAELens uses TransformerLens names:
    ``gpt2-small`` is ``gpt2``); a provider's name or a name TransformerLens does not know
    is kept as it is."""
    if providers.find(name) is not None:
        return name
    try:
        from transformer_lens.supported_models import get_official_model_name

        return get_official_model_name(name)
    except (ImportError, ValueError):
        return name


def load_model_for(sae, name_or_dir: str | os.PathLike | None = None, device="cpu", dtype=torch.float32):
    """``(bridge, tokenizer)`` in the processing ``sae`` was trained on (``sae.processing``),
    of the model it names (``sae.model_name``) unless ``name_or_dir`` says otherwise; a
    processing the model cannot take is one line."""
    from sae.processing import sae_processing

    name = name_or_dir or getattr(sae, "model_name", None)
    if name is None:
        raise SaelabError("the SAE names no model; pass the model's name or directory")
    return load_model(hub_model_name(str(name)), device=device, dtype=dtype, processing=sae_processing(sae))


def random_model(
    hf_config,
    tokenizer,
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = torch.float32,
    processing=None,
):
    """A randomly initialised model built from a ``transformers`` config, wrapped like any other.

    Lets tests and plumbing checks run GPT-2- or Pythia-shaped models with no weights;
    ``processing`` as in ``load_model``.
    """
    from transformers import AutoModelForCausalLM

    from sae.processing import Processing, apply_processing

    dtype = parse_dtype(dtype)
    hf_config._attn_implementation = "eager"
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        setattr(hf_config, key, getattr(tokenizer, key))
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(hf_config, attn_implementation="eager")
    name = f"random-{hf_config.model_type}"
    bridge = wrap(model, tokenizer, name, device=device, dtype=dtype)
    bridge.saelab_source = ModelSource("random", name)
    if processing is not None:
        apply_processing(bridge, Processing.from_kwargs(processing) if isinstance(processing, dict) else processing)
    return bridge, tokenizer
