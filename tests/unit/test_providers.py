"""Model providers: a second embedded model is one registration, and ``sae`` finds it by name
(model directory, text, defaults) and ``circuits`` its frozen circuits, with no other edit."""

from __future__ import annotations

import itertools
import json
import sys

import pytest
from pydantic import ValidationError

from sae import providers
from sae.errors import SaelabError
from sae.providers import Provider


@pytest.fixture
def registry(monkeypatch):
    """An empty registry whose entry points count as loaded: only what a test registers."""
    monkeypatch.setattr(providers, "_REGISTRY", {})
    monkeypatch.setattr(providers, "_scanned", True)
    return providers


def _documents(seed: int):
    return (f"document {i} of seed {seed}" for i in itertools.count())


def _provider(tmp_path, name="second", default=False, weights=True, **kw) -> Provider:
    model_dir = tmp_path / name / "weights"
    model_dir.mkdir(parents=True)
    if weights:
        (model_dir / "config.json").write_text("{}")
    return Provider(name=name, model_dir=model_dir, documents=_documents, default=default, **kw)


def test_a_provider_model_resolves_to_its_directory(registry, tmp_path):
    from sae.model import resolve_source

    provider = registry.register(_provider(tmp_path))
    source = resolve_source("second")
    assert (source.kind, source.location, source.provider) == ("provider", str(provider.model_dir), "second")
    assert resolve_source("gpt2").kind == "hub"  # a name no provider has is still a hub name


def test_missing_provider_weights_name_the_provider_and_the_command_that_makes_them(registry, tmp_path):
    from sae.model import resolve_source

    registry.register(_provider(tmp_path, weights=False, rebuild="make-second"))
    with pytest.raises(SaelabError, match=r"^the second weights are missing from .*weights; run 'make-second'$"):
        resolve_source("second")


def test_a_text_source_of_a_provider_reads_its_documents_with_the_seed(registry, tmp_path):
    from sae.text import TextSource, iter_texts

    registry.register(_provider(tmp_path))
    docs = list(itertools.islice(iter_texts(TextSource(kind="second"), seed=7), 2))
    assert docs == ["document 0 of seed 7", "document 1 of seed 7"]


def test_configs_default_to_the_default_provider(registry, tmp_path):
    from sae.store import StoreConfig
    from sae.text import TextSource

    registry.register(_provider(tmp_path, name="first"))
    registry.register(_provider(tmp_path, name="second", default=True))
    cfg = StoreConfig(hooks=["blocks.0.hook_resid_post"])
    assert (cfg.model, cfg.source.kind) == ("second", "second")
    assert StoreConfig.model_json_schema()["properties"]["model"]["default"] == "second"
    assert TextSource.model_json_schema()["properties"]["kind"]["default"] == "second"


def test_no_default_provider_is_one_line_and_leaves_the_schema_without_a_default(registry):
    from sae.store import StoreConfig

    with pytest.raises(SaelabError, match="no default model provider is registered"):
        StoreConfig(hooks=["blocks.0.hook_resid_post"])
    assert "default" not in StoreConfig.model_json_schema()["properties"]["model"]
    assert StoreConfig(hooks=["h"], model="gpt2", source={"kind": "hub", "path": "x"}).model == "gpt2"


def test_an_unknown_text_source_kind_lists_the_kinds_and_providers(registry, tmp_path):
    from sae.text import TextSource

    registry.register(_provider(tmp_path))
    with pytest.raises(ValidationError, match=r"Input should be one of 'local', 'hub', 'tokens', 'second'"):
        TextSource(kind="seconds")


def test_registering_is_idempotent_but_a_name_or_the_default_is_taken_once(registry, tmp_path):
    first = registry.register(_provider(tmp_path, name="a", default=True))
    assert registry.register(first) is first
    with pytest.raises(SaelabError, match="two model providers are named 'a'"):
        registry.register(Provider("a", first.model_dir, _documents))
    with pytest.raises(SaelabError, match="'a' and 'b' both claim to be the default"):
        registry.register(_provider(tmp_path, name="b", default=True))
    with pytest.raises(SaelabError, match=r"no model provider 'c' \(registered: a\)"):
        registry.get("c")


def _plugin(tmp_path, monkeypatch, body: str, name: str = "plugged") -> None:
    """A module and an installed distribution declaring it as a provider entry point."""
    (tmp_path / "plugin_mod.py").write_text(body)
    dist = tmp_path / "plugin_dist-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: plugin_dist\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{providers.GROUP}]\n{name} = plugin_mod:PROVIDER\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "plugin_mod", raising=False)


def test_a_provider_declared_as_an_entry_point_is_loaded_when_its_name_is_asked_for(registry, tmp_path, monkeypatch):
    monkeypatch.setattr(providers, "_scanned", False)
    _plugin(
        tmp_path,
        monkeypatch,
        "from pathlib import Path\nfrom sae.providers import Provider\n"
        "PROVIDER = Provider('plugged', Path('.'), lambda seed: iter(()))\n",
    )
    assert "plugin_mod" not in sys.modules
    assert registry.find("gpt2") is None and "plugin_mod" not in sys.modules  # loaded only when named
    provider = registry.find("plugged")
    assert provider is sys.modules["plugin_mod"].PROVIDER and "plugged" in registry.names()


def test_an_entry_point_that_is_not_a_provider_is_named(registry, tmp_path, monkeypatch):
    monkeypatch.setattr(providers, "_scanned", False)
    _plugin(tmp_path, monkeypatch, "PROVIDER = 'not a provider'\n")
    with pytest.raises(SaelabError, match=r"entry point 'plugged' of saelab.providers \(plugin_mod:PROVIDER\)"):
        registry.find("plugged")


def test_a_providers_frozen_circuits_are_its_ground_truth(registry, tmp_path):
    from circuits import ground_truth
    from circuits.graph import Node

    circuits = tmp_path / "circuits.json"
    record = {"nodes": [{"node": "0.1"}, {"node": "1.2"}], "edges": [{"sender": "0.1", "receiver": "1.2"}]}
    circuits.write_text(json.dumps({"ioi": record}))
    registry.register(_provider(tmp_path, files={"circuits": circuits}))
    assert ground_truth.truth_model_for("second", 2, 4) == "second"
    assert ground_truth.available("second") == ["path_patching"]  # no faithfulness file for it
    [truth] = ground_truth.resolve("second", "ioi", None, 2, 4)
    assert truth.heads == {Node("head", 0, 1), Node("head", 1, 2)}
    assert truth.head_pairs() == {frozenset((Node("head", 0, 1), Node("head", 1, 2)))}
    assert ground_truth.truth_model_for("elsewhere", 2, 4) is None


def test_a_provider_model_reads_its_own_text_unless_a_source_kind_is_named(registry, tmp_path):
    """A second embedded model was trained on its own corpus: a config naming it as the
    model and no source reads that corpus, not the default provider's."""
    from sae.store import StoreConfig

    registry.register(_provider(tmp_path, name="first", default=True))
    registry.register(_provider(tmp_path, name="second"))
    hooks = ["blocks.0.hook_resid_post"]
    assert StoreConfig(model="second", hooks=hooks).source.kind == "second"
    assert StoreConfig(model="second", hooks=hooks, source={"text_field": "t"}).source.kind == "second"
    assert StoreConfig(model="second", hooks=hooks, source={"kind": "first"}).source.kind == "first"
    assert StoreConfig(hooks=hooks).source.kind == "first"
    assert StoreConfig(model="gpt2", hooks=hooks).source.kind == "first"  # not a provider: the default text
