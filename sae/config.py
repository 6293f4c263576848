"""Typed configs: frozen pydantic models read from YAML, with one-line errors.

Every command that reads a config goes through ``load_config``: YAML (read with
``yaml.safe_load``, so a config can never construct Python objects), then any defaults or
flags the command adds, then ``--set key=value`` overrides (``apply_overrides``: dotted
keys, numeric parts index lists), validated into the command's config class. Unknown
keys, wrong types and impossible values raise ``ConfigError``: one line naming the file,
the dotted key and the problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from sae.errors import ConfigError

C = TypeVar("C", bound=BaseModel)


class FrozenConfig(BaseModel):
    """Base for every saelab config: immutable, and unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())


def describe_validation_error(err: ValidationError, source: str | None, at: tuple = ()) -> str:
    """The first problem in ``err`` as one line: ``source: key 'a.b': message`` (``at``: the
    path of the validated section in its file; no ``source``: no prefix)."""
    first = err.errors()[0]
    key = ".".join(str(p) for p in (*at, *first["loc"]))
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    elif first["type"] in ("value_error", "assertion_error"):  # a validator's own message, without pydantic's prefix
        msg = str(first.get("ctx", {}).get("error", msg))
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    where = f"key '{key}': " if key else ""
    return f"{source}: {where}{msg}{more}" if source else f"{where}{msg}{more}"


def parse_overrides(pairs: list[str] | None) -> dict[str, Any]:
    """``["a.b=3", "c=x"]`` → ``{"a": {"b": 3}, "c": "x"}``; values are parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ConfigError(f"--set {pair!r}: expected key=value")
        key, raw = pair.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def apply_overrides(data: Any, over: Any, where: str = "") -> Any:
    """``over`` merged into ``data``: mappings key by key, numeric keys into lists by index
    (``saes.0.sae.k``); any other value replaces what was there."""
    if not isinstance(over, dict):
        return over
    if isinstance(data, list):
        out = list(data)
        for key, value in over.items():
            if not str(key).isdigit() or int(key) >= len(out):
                raise ConfigError(
                    f"--set {where}{key}: {where.rstrip('.') or 'the list'} has no item {key!r} (it has {len(out)})"
                )
            out[int(key)] = apply_overrides(out[int(key)], value, f"{where}{key}.")
        return out
    out = dict(data) if isinstance(data, dict) else {}
    for key, value in over.items():
        out[key] = apply_overrides(out.get(key), value, f"{where}{key}.")
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except yaml.constructor.ConstructorError as e:  # e.g. !!python/object/apply: never constructed
        mark = e.problem_mark
        tag = (e.problem or "").rpartition("tag ")[2].strip("'").replace("tag:yaml.org,2002:", "!!") or "?"
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: YAML tag {tag!r}{where} is not allowed (configs hold plain data only)") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: malformed YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    return data


def build_config(cls: type[C], data: dict[str, Any], source: str = "config") -> C:
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise ConfigError(describe_validation_error(e, source)) from None
    except ValueError as e:  # raised by model_post_init checks
        raise ConfigError(f"{source}: {e}") from None


def load_data(
    path: str | Path | None,
    overrides: list[str] | None = None,
    under: dict | None = None,
    over: dict | None = None,
) -> dict[str, Any]:
    """The raw mapping ``load_config`` validates: ``under`` (defaults a command adds, e.g. a
    preset), the YAML at ``path``, ``over`` (the command's flags), then ``--set`` overrides."""
    data = read_yaml(path) if path is not None else {}
    if under:
        data = apply_overrides(under, data)
    if over:
        data = apply_overrides(data, over)
    return apply_overrides(data, parse_overrides(overrides))


def load_config(
    cls: type[C],
    path: str | Path | None,
    overrides: list[str] | None = None,
    under: dict | None = None,
    over: dict | None = None,
) -> C:
    """Read ``path`` (or start from defaults), layer ``under``/``over`` and ``key=value``
    overrides as ``load_data`` does, validate into ``cls``."""
    data = load_data(path, overrides, under, over)
    return build_config(cls, data, str(path) if path is not None else "config")
