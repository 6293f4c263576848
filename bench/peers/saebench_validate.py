"""Validate saelab's SAEBench-format JSON with sae-bench's own output classes (runs in the sae_bench peer).

Reads ``{"files": [path, ...]}`` on stdin; prints one JSON object: per file, the eval_type_id,
the sae-bench class it was validated with, ``ok`` and, when not, pydantic's first errors, and
the keys of our metrics and details that the class does not declare (pydantic dataclasses
ignore them: they do not fail validation, but SAEBench's plots would not read them).

The class is chosen by eval_type_id: ours equal SAEBench's (core, sparse_probing, tpp, scr,
ravel, autointerp) except absorption, whose hierarchy is the world's categories
(``absorption_category``, SAEBench ``absorption_first_letter``): it is validated with the
absorption classes, of which eval_type_id is a free string. One field cannot hold: a detail's
parent concept is SAEBench's ``first_letter``, validated as one letter, where ours is a category
(``category``: "city", "food", ...). Those details are validated with ``first_letter`` set to "a"
and every such substitution is listed under ``adapted``; every other field is checked as is.

Core: a never-firing latent's ``consistent_activation_heuristic`` is 0/0; SAEBench writes NaN
(Python's json), ours null (JSON has no NaN); nulls there are read back as NaN, listed in ``adapted``.

A document the lab wrote for an SAE the evaluation could not score (``eval_result_unstructured``
holds ``skipped``: its reason; its metrics are null) is reported ``skipped`` and not validated:
SAEBench aborts such an SAE and writes no file, so its classes have no form for it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import fields, is_dataclass

from pydantic import TypeAdapter, ValidationError

CLASSES = {
    "core": ("sae_bench.evals.core.eval_output", "CoreEvalOutput"),
    "sparse_probing": ("sae_bench.evals.sparse_probing.eval_output", "SparseProbingEvalOutput"),
    "absorption": ("sae_bench.evals.absorption.eval_output", "AbsorptionEvalOutput"),
    "tpp": ("sae_bench.evals.scr_and_tpp.eval_output", "TppEvalOutput"),
    "scr": ("sae_bench.evals.scr_and_tpp.eval_output", "ScrEvalOutput"),
    "ravel": ("sae_bench.evals.ravel.eval_output", "RAVELEvalOutput"),
    "autointerp": ("sae_bench.evals.autointerp.eval_output", "AutoInterpEvalOutput"),
}


def output_class(eval_type_id: str):
    key = "absorption" if eval_type_id.startswith("absorption") else eval_type_id
    if key not in CLASSES:
        return None
    module, name = CLASSES[key]
    return getattr(__import__(module, fromlist=[name]), name)


def _field_type(cls, name: str):
    return next((f.type for f in fields(cls) if f.name == name), None)


def undeclared(cls, doc: dict) -> list[str]:
    """Keys of the document's metrics and details that ``cls`` does not declare (dotted paths)."""
    out = []
    categories = _field_type(cls, "eval_result_metrics")
    for category, block in (doc.get("eval_result_metrics") or {}).items():
        metric_cls = _field_type(categories, category) if is_dataclass(categories) else None
        if metric_cls is None:
            out.append(f"eval_result_metrics.{category}")
            continue
        declared = {f.name for f in fields(metric_cls)}
        out += [f"eval_result_metrics.{category}.{k}" for k in block if k not in declared]
    detail_type = _field_type(cls, "eval_result_details")
    args = getattr(detail_type, "__args__", ())
    detail_cls = args[0] if args and is_dataclass(args[0]) else None
    if detail_cls is not None:
        declared = {f.name for f in fields(detail_cls)}
        keys = sorted({k for d in doc.get("eval_result_details") or [] for k in d})
        out += [f"eval_result_details.{k}" for k in keys if k not in declared]
    return out


def adapt(doc: dict) -> tuple[dict, list[str]]:
    """The document as validated (absorption over categories: a letter stands in for the category;
    core: null consistent_activation_heuristic back to NaN)."""
    if doc.get("eval_type_id") == "core":
        return _core_nan(doc)
    if not doc.get("eval_type_id", "").startswith("absorption") or doc["eval_type_id"] == "absorption_first_letter":
        return doc, []
    details = doc.get("eval_result_details") or []
    adapted = [
        f"eval_result_details.{i}.first_letter: category {d.get('category')!r} -> 'a'" for i, d in enumerate(details)
    ]
    return {**doc, "eval_result_details": [{**d, "first_letter": "a"} for d in details]}, adapted


def _core_nan(doc: dict) -> tuple[dict, list[str]]:
    """SAEBench's core writes a never-firing latent's consistent_activation_heuristic as NaN (0/0,
    written by Python's json with allow_nan); ours writes null (JSON has no NaN). Null → NaN here."""
    key = "consistent_activation_heuristic"
    details = doc.get("eval_result_details") or []
    nulls = sum(1 for d in details if key in d and d[key] is None)
    if not nulls:
        return doc, []
    fixed = [{**d, key: float("nan")} if key in d and d[key] is None else d for d in details]
    return {**doc, "eval_result_details": fixed}, [f"eval_result_details.*.{key}: {nulls} null -> NaN (dead latents)"]


def validate(path: str) -> dict:
    with open(path) as f:
        doc = json.load(f)
    type_id = doc.get("eval_type_id", "")
    cls = output_class(type_id)
    doc, adapted = adapt(doc)
    row = {"file": path, "eval_type_id": type_id, "adapted": adapted, "skipped": None}
    unstructured = doc.get("eval_result_unstructured")
    if isinstance(unstructured, dict) and unstructured.get("skipped"):
        return {**row, "ok": None, "class": None, "errors": [], "skipped": unstructured["skipped"]}
    if cls is None:
        return {**row, "ok": False, "class": None, "errors": [f"sae-bench has no output class for {type_id!r}"]}
    row["class"] = cls.__name__
    try:
        TypeAdapter(cls).validate_python(doc)
    except ValidationError as e:
        errors = [f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()[:5]]
        return {**row, "ok": False, "errors": errors, "undeclared": undeclared(cls, doc)}
    return {**row, "ok": True, "errors": [], "undeclared": undeclared(cls, doc)}


def main() -> None:
    from importlib.metadata import version

    payload = json.load(sys.stdin)
    results = [validate(p) for p in payload["files"]]
    print(json.dumps({"sae_bench_version": version("sae-bench"), "results": results}))


if __name__ == "__main__":
    main()
