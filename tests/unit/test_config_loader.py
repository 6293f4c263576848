"""The one config loader: YAML, a command's defaults and flags, list-aware ``--set``, one-line errors."""

from __future__ import annotations

import pytest
from pydantic import Field

from sae.config import FrozenConfig, apply_overrides, load_config, load_data, parse_overrides
from sae.errors import ConfigError


class Inner(FrozenConfig):
    k: int = Field(1, gt=0, description="A count.")


class Outer(FrozenConfig):
    name: str = Field("x", description="A name.")
    items: list[Inner] = Field(default_factory=list, description="Some items.")
    inner: Inner = Field(default_factory=Inner, description="A section.")


def test_overrides_merge_mappings_and_index_lists():
    data = {"a": {"b": 1, "c": 2}, "xs": [{"k": 1}, {"k": 2}], "keep": [1, 2]}
    got = apply_overrides(data, parse_overrides(["a.b=3", "xs.1.k=5", "keep=[7]", "new.deep=true"]))
    assert got == {"a": {"b": 3, "c": 2}, "xs": [{"k": 1}, {"k": 5}], "keep": [7], "new": {"deep": True}}
    assert data["xs"][1] == {"k": 2}  # the input is left alone
    with pytest.raises(ConfigError, match=r"--set xs.2: xs has no item '2' \(it has 2\)"):
        apply_overrides(data, parse_overrides(["xs.2.k=1"]))


def test_layers_apply_in_order(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: file\ninner: {k: 2}\nitems: [{k: 1}, {k: 1}]\n")
    under = {"name": "preset", "inner": {"k": 9}}
    assert load_data(path, under=under) == {"name": "file", "inner": {"k": 2}, "items": [{"k": 1}, {"k": 1}]}
    cfg = load_config(Outer, path, ["items.1.k=4"], under=under, over={"name": "flag"})
    assert cfg == Outer(name="flag", inner=Inner(k=2), items=[Inner(k=1), Inner(k=4)])
    assert load_config(Outer, None, ["inner.k=3"]) == Outer(inner=Inner(k=3))


def test_errors_are_one_line_with_the_file_and_the_dotted_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("items: [{k: 1}]\n")
    with pytest.raises(ConfigError, match=r"^.*c\.yaml: key 'items\.0\.kk': unknown key$"):
        load_config(Outer, path, ["items.0.kk=3"])
    with pytest.raises(ConfigError, match=r"c\.yaml: key 'inner\.k': Input should be greater than 0$"):
        load_config(Outer, path, ["inner.k=0"])
    with pytest.raises(ConfigError, match=r"c\.yaml: key 'name': Input should be a valid string$"):
        load_config(Outer, path, ["name=[1]"])
    path.write_text("items: [\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: malformed YAML at line 2$"):
        load_config(Outer, path)
