"""SAEBench's output JSON (``BaseEvalOutput``) for saelab SAEs, and where it is written.

A document is what SAEBench's ``eval_output.to_json_file`` writes::

    eval_type_id, eval_config, eval_id (uuid4), datetime_epoch_millis,
    eval_result_metrics {category: {metric: number | null}}   (flat: no nested dicts),
    eval_result_details [ {...} ], sae_bench_commit_hash, sae_lens_id, sae_lens_release_id,
    sae_lens_version, sae_cfg_dict, eval_result_unstructured

``sae_bench_commit_hash`` is ``"saelab"`` (SAEBench did not run it); ``sae_lens_id`` and
``sae_lens_release_id`` are null (a saelab run is no SAELens release; the file name carries
the run and the SAE instead); ``sae_cfg_dict`` is the SAE's saved ``cfg.json`` (SAELens
layout). Non-finite numbers are written as null (JSON has no NaN).

Files: ``OUT/saebench/<eval_type_id>/<run>_<sae>_eval_results.json`` (the SAE's suite id) (``/`` → ``_``, as
SAEBench names them), and one lab results file ``OUT/saebench_<name>.json`` (kind
``saebench_<name>``) holding every SAE's document for the report.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from pathlib import Path
from typing import Any

from sae.atomic import write_json

COMMIT = "saelab"
SCHEMA_VERSION = 1


def clean(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (recursively)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


def sae_cfg_dict(info: dict) -> dict | None:
    path = Path(info.get("sae_dir", "")) / "cfg.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def document(
    eval_type_id: str,
    eval_config: dict,
    metrics: dict[str, dict],
    details: list[dict],
    info: dict,
    unstructured: Any = None,
) -> dict:
    """One SAE's results in SAEBench's shape (``info``: the suite's per-SAE record)."""
    for category, block in metrics.items():
        nested = [k for k, v in block.items() if isinstance(v, dict | list)]
        if nested:
            raise ValueError(f"{eval_type_id}: metric {category}.{nested[0]} is not a number (metrics are flat)")
    return clean(
        {
            "eval_type_id": eval_type_id,
            "eval_config": eval_config,
            "eval_id": str(uuid.uuid4()),
            "datetime_epoch_millis": int(time.time() * 1000),
            "eval_result_metrics": metrics,
            "eval_result_details": details,
            "sae_bench_commit_hash": COMMIT,
            "sae_lens_id": None,
            "sae_lens_release_id": None,
            "sae_lens_version": None,
            "sae_cfg_dict": sae_cfg_dict(info),
            "eval_result_unstructured": unstructured,
        }
    )


def file_name(info: dict) -> str:
    """SAEBench's ``{release}_{sae_id}_eval_results.json`` with the SAE's id (``run/name``) for both."""
    return f"{info['id']}_eval_results.json".replace("/", "_")


def write(out: Path, name: str, docs: list[tuple[dict, dict]], definitions: dict[str, str]) -> dict:
    """Write each ``(info, document)``'s SAEBench file and the lab's ``saebench_<name>.json``; returns the latter."""
    out = Path(out)
    entries = []
    for info, doc in docs:
        path = out / "saebench" / doc["eval_type_id"] / file_name(info)
        write_json(path, doc)
        entries.append(
            {
                "id": info["id"],
                "name": info["name"],
                "architecture": info.get("architecture"),
                "hook": info.get("hook"),
                "d_sae": info.get("d_sae"),
                "l0": (info.get("metrics") or {}).get("l0"),
                "file": str(path.relative_to(out)),
                "document": doc,
            }
        )
    results = {
        "kind": f"saebench_{name}",
        "schema_version": SCHEMA_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "eval": name,
        "definitions": definitions,
        "saes": entries,
    }
    write_json(out / f"saebench_{name}.json", results)
    return results
