"""A run's ``saes[].sae``: the trainable families' configs as one union on ``architecture``.

The union is read from the registry when a config is validated (and when its JSON schema
is asked for), so a family registered later, a test's own included, is part of it with no
other edit. A mapping is validated by its family's config class, so an unknown field or a
wrong type is reported at its dotted path (``saes.0.sae.kk``), before any model is loaded.
"""

from __future__ import annotations

from typing import Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError, core_schema

from sae.architectures.base import SAEConfig
from sae.architectures.registry import REGISTRY, families, trainable


def _error(loc: tuple, kind: str, message: str, value: Any) -> ValidationError:
    detail = InitErrorDetails(type=PydanticCustomError(kind, message), loc=loc, input=value)
    return ValidationError.from_exception_data("SAE config", [detail])


def family_config(value: Any) -> SAEConfig:
    """The typed config of a trainable family from a mapping (or an already typed config)."""
    known = ", ".join(trainable())
    if isinstance(value, SAEConfig):
        data = value.model_dump()
    elif isinstance(value, dict):
        data = value
    else:
        raise _error((), "sae_config_type", f"expected a mapping with 'architecture' ({known}) and its fields", value)
    arch = data.get("architecture")
    if arch is None:
        raise _error(("architecture",), "missing", f"missing: the SAE family ({known})", data)
    entry = REGISTRY.get(arch) if isinstance(arch, str) else None
    if entry is None or not entry.trainable:
        raise _error(("architecture",), "unknown_family", f"{arch!r} is not a trainable family ({known})", arch)
    if isinstance(value, entry.config_class):
        return value
    return entry.config_class.model_validate(data)


def _dump(value: Any, info: core_schema.SerializationInfo) -> Any:
    return value.model_dump(mode=info.mode) if isinstance(value, SAEConfig) else value


class FamilyConfig:
    """Annotation of a field holding one trainable family's config (see the module doc)."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            family_config,
            serialization=core_schema.plain_serializer_function_ser_schema(_dump, info_arg=True),
        )

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler) -> dict:
        options = [handler(f.config_class.__pydantic_core_schema__) for f in families(trainable=True)]
        return {"oneOf": options, "discriminator": {"propertyName": "architecture"}}
