"""Configs documented from their classes: ``--explain`` for one file, the reference for all.

Both read the pydantic fields (type, default, description), so the documentation cannot
drift from the code; ``docs/configs.md`` is ``reference()`` and a test fails when the
committed file differs. A family config (``saes[].sae``) is documented by the registry
family its ``architecture`` names.
"""

from __future__ import annotations

import json
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from saelab.config_kinds import KINDS

COMMENT_COLUMN = 44


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """Pydantic model classes named anywhere in a field's annotation."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _nested(annotation: Any, value: Any) -> type[BaseModel] | None:
    """The config class of a nested mapping ``value`` (a family config by its architecture)."""
    from sae.architectures import SAEConfig, config_class

    models = _models_in(annotation)
    if not models or not isinstance(value, dict):
        return None
    if issubclass(models[0], SAEConfig) and value.get("architecture"):
        return config_class(value["architecture"])
    return models[0]


def type_name(annotation: Any) -> str:
    """A field's type as a reader writes it: ``int``, ``str | None``, ``'a' | 'b'``, ``list[float]``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin in (list, tuple, dict):
        inner = ", ".join("..." if a is Ellipsis else type_name(a) for a in args)
        return f"{origin.__name__}[{inner}]" if inner else origin.__name__
    if annotation is type(None):
        return "None"
    if annotation is Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation))


def _scalar(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _line(pad: str, text: str, doc: str | None) -> str:
    if not doc:
        return pad + text
    return f"{pad + text:<{COMMENT_COLUMN}}  # {doc}"


def explain_lines(cls: type[BaseModel], data: dict, indent: int = 0, first: str = "") -> list[str]:
    """YAML of ``data`` (a config dumped in JSON mode) with each field's description beside it."""
    lines: list[str] = []
    pad = "  " * indent
    for i, (name, field) in enumerate(cls.model_fields.items()):
        value = data.get(name)
        lead = (first if i == 0 else " " * len(first)) if first else ""
        nested = _nested(field.annotation, value)
        if nested is not None:
            lines.append(_line(pad + lead, f"{name}:", field.description))
            lines += explain_lines(nested, value, indent + 1 + len(lead) // 2)
        elif isinstance(value, list) and value and _nested(field.annotation, value[0]) is not None:
            lines.append(_line(pad + lead, f"{name}:", field.description))
            for item in value:
                lines += explain_lines(_nested(field.annotation, item), item, indent + 1 + len(lead) // 2, "- ")
        else:
            lines.append(_line(pad + lead, f"{name}: {_scalar(value)}", field.description))
    return lines


def explain(kind_name: str, config: BaseModel, source: str) -> str:
    """The resolved ``config`` as commented YAML (defaults filled, overrides applied)."""
    head = [f"# {source}: a '{kind_name}' config ({type(config).__name__}), resolved; every field with its meaning"]
    return "\n".join(head + explain_lines(type(config), config.model_dump(mode="json"))) + "\n"


# -- the reference ----------------------------------------------------------------------------


def _default(field) -> str:
    if field.is_required():
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default
    if value is PydanticUndefined:
        return "required"
    if isinstance(value, BaseModel):
        return "(section)"
    if isinstance(value, tuple):
        value = list(value)
    return f"`{_scalar(value)}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def field_rows(cls: type[BaseModel], prefix: str = "") -> list[str]:
    """Markdown table rows of ``cls``'s fields, nested sections flattened to dotted keys."""
    from sae.architectures import SAEConfig

    rows = []
    for name, field in cls.model_fields.items():
        key = f"{prefix}{name}"
        models = _models_in(field.annotation)
        family = bool(models) and issubclass(models[0], SAEConfig)
        kind = "family config" if family else type_name(field.annotation)
        rows.append(f"| `{key}` | {_cell(kind)} | {_cell(_default(field))} | {_cell(field.description or '')} |")
        if models and not family:
            many = typing.get_origin(field.annotation) in (list, tuple)
            rows += field_rows(models[0], f"{key}[]." if many else f"{key}.")
    return rows


def _table(cls: type[BaseModel]) -> list[str]:
    return ["| key | type | default | description |", "|---|---|---|---|", *field_rows(cls), ""]


def _first_paragraph(doc: str | None) -> str:
    return " ".join((doc or "").strip().split("\n\n")[0].split())


def family_section(entry) -> list[str]:
    import sys

    module_doc = _first_paragraph(sys.modules[entry.sae_class.__module__].__doc__)
    facts = [
        f"Saved as SAELens `{entry.saelens_architecture}`",
        f"inference form `{entry.form}`",
        "trainable" if entry.trainable else "inference only",
    ]
    if entry.coefficient is not None:
        facts.append(f"sparsity coefficient `{entry.coefficient.field}`")
    if entry.has_k:
        facts.append("L0 set by `k`")
    if entry.needs_gradients:
        facts.append("reads g = ∂L/∂x")
    return [f"### `{entry.name}`", "", module_doc, "", "; ".join(facts) + ".", "", *_table(entry.config_class)]


def reference() -> str:
    """``docs/configs.md``: every config kind, every field; each SAE family from the registry."""
    from sae.architectures import families

    out = [
        "# Config reference",
        "",
        "Generated from the config classes by `saelab config --reference > docs/configs.md`; a test fails",
        "when this file is stale. Every config is YAML validated into a frozen pydantic model: an unknown",
        "key, a wrong type or an impossible value is one line naming the file and the dotted key, exit 2.",
        "`--set key=value` overrides any key (numeric parts index lists: `saes.0.sae.k=32`);",
        "`saelab config --explain FILE` prints a file resolved, with these descriptions beside it;",
        "`saelab config --schema KIND` prints the JSON schema.",
        "",
    ]
    for k in KINDS.values():
        cls = k.config_class()
        out += [f"## `{k.name}`: {cls.__name__}", "", f"Read by: {k.command}.", ""]
        out += [_first_paragraph(cls.__doc__), "", *_table(cls)]
    out += [
        "## SAE families (`saes[].sae`)",
        "",
        "A run's `saes[].sae` is one family's config, chosen by `architecture` (the registry key, as in",
        "`cfg.json`); `d_in` comes from the hook when omitted. One section per registered family:",
        "",
    ]
    for entry in families():
        out += family_section(entry)
    return "\n".join(out).rstrip() + "\n"
