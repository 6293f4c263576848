"""``cfg.json["architecture"]`` → SAE class. Families register themselves on import."""

from __future__ import annotations

from sae.errors import SaelabError

REGISTRY: dict[str, type] = {}


def register(name: str):
    def add(cls):
        REGISTRY[name] = cls
        cls.architecture = name
        return cls

    return add


def sae_class(name: str) -> type:
    import sae.architectures  # noqa: F401 - registers every family

    try:
        return REGISTRY[name]
    except KeyError:
        raise SaelabError(f"unknown SAE architecture {name!r}; known: {', '.join(sorted(REGISTRY))}") from None


def config_class(name: str) -> type:
    return sae_class(name).config_class
