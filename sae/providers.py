"""Model providers: named embedded models, each with its own text and data files.

``sae`` sits at the bottom of the lab and names no package above it, yet
``load_model("organism")`` and a text source of kind ``organism`` must work. A provider
is how: a package that ships a model registers a ``Provider`` under a name, and ``sae``
asks the registry for that name. A second embedded model is a second registration.

Registration needs no import by name. A provider is declared as an entry point of the
``saelab.providers`` group (``name = "package.module:OBJECT"`` in ``pyproject.toml``);
a name not yet registered is looked up there, and its module is imported then, so a
provider costs nothing until it is used. Code that composes the lab (the ``saelab``
package) may also ``register`` a provider directly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path

from sae.errors import SaelabError

GROUP = "saelab.providers"


@dataclass(frozen=True, eq=False)
class Provider:
    """What ``sae`` and ``circuits`` read from an embedded model, without importing it."""

    #: the name configs and the command line use (``--model NAME``, ``source: {kind: NAME}``)
    name: str
    #: a Hugging Face model directory: config.json, weights, tokenizer files
    model_dir: Path
    #: seed → an endless stream of documents, the model's own text (the same seed, the same stream)
    documents: Callable[[int], Iterator[str]]
    #: named data files, e.g. ``circuits``: the frozen ground-truth circuits, keyed by task
    files: Mapping[str, Path] = field(default_factory=dict)
    #: the model and text a config that names none gets (at most one provider has it)
    default: bool = False
    #: the command that recreates missing weights, for the error message
    rebuild: str = ""


_REGISTRY: dict[str, Provider] = {}
_scanned = False  # every entry point of the group has been loaded


def register(provider: Provider) -> Provider:
    """Add ``provider``; the same object again is a no-op, another one under a taken name an error."""
    held = _REGISTRY.get(provider.name)
    if held is provider:
        return provider
    if held is not None:
        raise SaelabError(f"two model providers are named {provider.name!r}; rename one")
    if provider.default:
        other = next((p.name for p in _REGISTRY.values() if p.default), None)
        if other is not None:
            raise SaelabError(f"model providers {other!r} and {provider.name!r} both claim to be the default")
    _REGISTRY[provider.name] = provider
    return provider


def _load_entry_points(name: str | None = None) -> None:
    """Register the providers declared as entry points (those named ``name``, or all)."""
    global _scanned
    if _scanned:
        return
    for ep in entry_points(group=GROUP, **({"name": name} if name is not None else {})):
        if ep.name in _REGISTRY:
            continue
        try:
            provider = ep.load()
        except Exception as e:  # a broken plug-in is named, not a traceback
            raise SaelabError(
                f"model provider {ep.name!r} ({ep.value}) cannot be loaded: {type(e).__name__}: {e}"
            ) from None
        if not isinstance(provider, Provider) or provider.name != ep.name:
            raise SaelabError(f"entry point {ep.name!r} of {GROUP} ({ep.value}) is not a Provider named {ep.name!r}")
        register(provider)
    _scanned = _scanned or name is None


def find(name: str) -> Provider | None:
    """The provider called ``name``, or None when there is none (a directory or a hub name)."""
    if name not in _REGISTRY:
        _load_entry_points(name)
    return _REGISTRY.get(name)


def get(name: str) -> Provider:
    provider = find(name)
    if provider is None:
        known = ", ".join(names()) or "none"
        raise SaelabError(
            f"no model provider {name!r} (registered: {known}); if it should exist, reinstall saelab "
            "(pip install -e .) so that its entry points are registered"
        )
    return provider


def names() -> list[str]:
    """Every registered provider's name, entry points included."""
    _load_entry_points()
    return sorted(_REGISTRY)


def default() -> Provider:
    """The provider whose model and text a config gets when it names none."""
    _load_entry_points()
    for provider in _REGISTRY.values():
        if provider.default:
            return provider
    raise SaelabError("no default model provider is registered; name a model directory or a hub name")


def default_name() -> str:
    return default().name


def schema_default(schema: dict) -> None:
    """Show the default provider's name as the default of a field whose default is computed
    (pydantic leaves ``default_factory`` fields without one in the JSON schema)."""
    with suppress(SaelabError):  # no default provider: the schema shows none
        schema["default"] = default_name()
