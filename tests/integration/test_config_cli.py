"""``saelab config``: schemas, ``--explain`` and the generated reference (docs/configs.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from sae.architectures import trainable
from saelab.cli import main
from saelab.config_kinds import KINDS, detect, kind

ROOT = Path(__file__).resolve().parents[2]
#: what each shipped config that does not train SAEs is, written by hand
OTHER = {
    "cache_organism.yaml": "cache",
    "claims.yaml": "suite",
    "claims_absorption.yaml": "suite",
    "eval_suite.yaml": "suite",
    "organism.yaml": "organism",
    "organism_b.yaml": "organism",
    "saebench.yaml": "suite",
}
#: every other shipped config trains SAEs (one per family, the transcoders, the sweep): which
#: families they cover is checked against the registry below, not listed here
SHIPPED = {
    **OTHER,
    **{p.name: "train" for p in sorted((ROOT / "configs").glob("*.yaml")) if p.name not in OTHER},
}


def _run(capsys, *argv) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def test_every_trainable_family_has_a_shipped_training_config():
    """Each family of the registry is trained by some shipped config (its example)."""
    trained = set()
    for name, what in SHIPPED.items():
        if what == "train":
            data = yaml.safe_load((ROOT / "configs" / name).read_text())
            trained |= {s["sae"]["architecture"] for s in data["saes"]}
    assert set(trainable()) <= trained, set(trainable()) - trained
    assert {"transcoder.yaml", "skip_transcoder.yaml", "sweep_organism.yaml"} <= set(SHIPPED)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_configs_are_detected_and_valid_under_their_schema(name, capsys):
    jsonschema = pytest.importorskip("jsonschema")
    path = ROOT / "configs" / name
    data = yaml.safe_load(path.read_text())
    assert detect(path, data).name == SHIPPED[name]
    schema = json.loads(_run(capsys, "config", "--schema", SHIPPED[name]))
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(data, schema)


def test_every_kind_has_a_valid_schema_and_the_listing_names_them(capsys):
    jsonschema = pytest.importorskip("jsonschema")
    listing = _run(capsys, "config", "--schema")
    for k in KINDS:
        assert listing.count(f"{k} ") >= 1
        jsonschema.Draft202012Validator.check_schema(json.loads(_run(capsys, "config", "--schema", k)))
    assert kind("sweep").name == "train"


def test_the_train_schema_is_a_union_of_the_families_on_architecture(capsys):
    schema = json.loads(_run(capsys, "config", "--schema", "train"))
    sae = schema["$defs"]["SAESpec"]["properties"]["sae"]
    assert sae["discriminator"] == {"propertyName": "architecture"}
    consts = [o["properties"]["architecture"]["const"] for o in sae["oneOf"]]
    # every trainable family of the registry, in its order (the list itself: tests/unit/test_registry.py)
    assert consts == list(trainable())
    assert all(o["additionalProperties"] is False for o in sae["oneOf"])


def test_explain_prints_the_resolved_config_with_each_fields_documentation(capsys):
    from sae.config import load_config
    from sae.train_run import RunConfig

    path = str(ROOT / "configs" / "sweep_organism.yaml")
    out = _run(capsys, "config", "--explain", path, "--set", "saes.1.sae.k=8", "--set", "trainer.lr=0.001")
    resolved = load_config(RunConfig, path, ["saes.1.sae.k=8", "trainer.lr=0.001"])
    # the text is YAML of the resolved config (defaults filled, overrides applied) ...
    assert yaml.safe_load(out) == resolved.model_dump(mode="json")
    # ... with each field's description beside it, the family's own fields included
    lines = out.splitlines()
    assert any(line.strip().startswith("k: 8") and "# Active latents per token" in line for line in lines)
    assert any(line.strip().startswith("l1_coefficient: 4.25") and "# λ of the" in line for line in lines)
    assert any(line.strip().startswith("lr: 0.001") and "# Learning rate; None" in line for line in lines)


def test_explain_with_an_explicit_kind(capsys, tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("{}\n")
    out = _run(capsys, "config", "--explain", str(path), "--kind", "dashboard")
    assert "n_tokens: 262144" in out and "# Token positions run through the model." in out


def test_the_committed_reference_is_current(capsys):
    """Regenerate with: saelab config --reference > docs/configs.md"""
    assert _run(capsys, "config", "--reference") == (ROOT / "docs" / "configs.md").read_text(encoding="utf-8")


def _models(cls, seen):
    from saelab.config_docs import _models_in

    if cls in seen:
        return
    seen.add(cls)
    for field in cls.model_fields.values():
        for m in _models_in(field.annotation):
            _models(m, seen)


def test_every_config_field_has_a_description():
    from sae.architectures import families

    seen: set = set()
    for k in KINDS.values():
        _models(k.config_class(), seen)
    for f in families():
        _models(f.config_class, seen)
    missing = [f"{c.__name__}.{n}" for c in seen for n, f in c.model_fields.items() if not f.description]
    assert not missing, missing
    assert len(seen) >= 20
