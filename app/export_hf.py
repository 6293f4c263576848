"""``saelab export hf``: a Hugging Face model repo folder in SAELens' pretrained layout.

``OUT/<sae id>/`` per SAE holds the files the lab saved (``cfg.json``,
``sae_weights.safetensors``, and ``saelab_state.safetensors`` when the family has state beyond
the inference form) plus ``sparsity.safetensors`` (key ``sparsity``: log10 feature density,
``log10(density + 1e-10)`` as SAELens' trainer writes it) when a dashboard build measured the
densities. SAELens reads such a folder with ``SAE.from_pretrained(REPO_ID, sae_id)`` (a
release name containing ``/`` is a repo, the id its folder) or ``load_from_disk``; the lab
with ``load_sae("hf://REPO_ID/<sae id>")``. ``README.md`` is the model card: a YAML header,
a table of the SAEs and a ``pretrained_saes.yaml`` entry. Nothing is uploaded unless
``push`` is called (``--push``).
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
import yaml

from app.export_neuronpedia import slug
from sae.atomic import atomic_directory, write_text
from sae.errors import ConfigError, SaelabError
from sae.run_dir import SAEEntry, find_saes
from sae.saving import CFG, EXTRA, SPARSITY, WEIGHTS

EPS = 1e-10  # SAELens: log10(feature_sparsity + 1e-10)


def _densities(entry: SAEEntry) -> np.ndarray | None:
    path = entry.dashboard / "features.parquet"
    if not path.is_file():
        return None
    try:
        table = pq.read_table(path, columns=["density"])
    except Exception as e:  # a damaged build: say which file
        raise ConfigError(f"{path}: unreadable ({str(e).splitlines()[0][:100]})") from None
    density = table.column("density").to_numpy()
    if len(density) != entry.d_sae:
        raise ConfigError(f"{path}: {len(density)} features for an SAE of {entry.d_sae}")
    return density


def _entries(run_dir) -> list[SAEEntry]:
    try:
        return find_saes(run_dir, strict=False)
    except SaelabError as e:  # no such directory, no saved SAE: the user's input (exit 2)
        raise ConfigError(str(e)) from None


def _card(repo_id: str, rows: list[dict], models: list[str]) -> str:
    release = slug(repo_id.split("/")[-1])
    header = {
        "library_name": "saelab",
        "tags": [
            "saelab",
            "saelens",
            "sparse-autoencoder",
            "mechanistic-interpretability",
            *sorted({r["hook"] for r in rows if r["hook"]}),
        ],
    }
    hub_models = [m for m in models if "/" in m]
    if hub_models:
        header["base_model"] = hub_models[0] if len(hub_models) == 1 else hub_models
    entry = {
        release: {
            "repo_id": repo_id,
            "model": models[0] if len(models) == 1 else ", ".join(models),
            "conversion_func": None,
            "saes": [
                {"id": r["id"], "path": r["id"], **({"l0": r["l0"]} if r["l0"] is not None else {})} for r in rows
            ],
        }
    }
    table = [
        "| SAE id | architecture | model | hook | d_in | d_sae | L0 (dashboard text) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        l0 = "—" if r["l0"] is None else f"{r['l0']:.2f}"
        table.append(
            f"| `{r['id']}` | {r['architecture']} | {r['model']} | `{r['hook']}` | {r['d_in']} | {r['d_sae']} | {l0} |"
        )
    first = rows[0]["id"]
    return "\n".join(
        [
            "---",
            yaml.safe_dump(header, sort_keys=False).strip(),
            "---",
            "",
            f"# {repo_id}",
            "",
            f"Sparse autoencoders trained with saelab on {', '.join(f'`{m}`' for m in models)}, in SAELens' "
            "pretrained layout: one folder per SAE with `cfg.json`, `sae_weights.safetensors` and, where "
            "densities were measured, `sparsity.safetensors` (log10 feature density).",
            "",
            *table,
            "",
            "## Loading",
            "",
            "```python",
            "from sae_lens import SAE",
            f'sae = SAE.from_pretrained("{repo_id}", "{first}")',
            "",
            "from sae.loading import load_sae  # saelab",
            f'sae = load_sae("hf://{repo_id}/{first}")',
            "```",
            "",
            "To register the release with SAELens, add this to its `pretrained_saes.yaml`:",
            "",
            "```yaml",
            yaml.safe_dump(entry, sort_keys=False).strip(),
            "```",
            "",
        ]
    )


def export_hf(run_dir: str | Path, repo_id: str, out: str | Path | None = None, force: bool = False) -> Path:
    """Write the repo folder for every SAE of ``run_dir``; returns the folder."""
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ConfigError(f"{repo_id}: expected a Hugging Face repo id of the form owner/name")
    entries = _entries(run_dir)
    out = Path(out) if out is not None else Path(f"hf-{slug(repo_id.split('/')[-1])}")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ConfigError(f"{out}: not empty; pass --force to replace it")
    ids = [slug(e.name) for e in entries]
    if len(set(ids)) != len(ids):
        ids = [slug(f"{i}-{e.name}") for i, e in enumerate(entries)]
    densities = [_densities(e) for e in entries]
    rows = []
    with atomic_directory(out) as tmp:
        for e, sae_id, density in zip(entries, ids, densities, strict=True):
            folder = tmp / sae_id
            folder.mkdir(parents=True)
            for name in (CFG, WEIGHTS, EXTRA):
                if (e.path / name).is_file():
                    shutil.copyfile(e.path / name, folder / name)
            if not (folder / WEIGHTS).is_file():
                raise ConfigError(f"{e.path}: no weights ({WEIGHTS} is missing)")
            l0 = None
            if density is not None:
                from safetensors.torch import save_file

                sparsity = torch.log10(torch.from_numpy(density.astype(np.float32)) + EPS)
                save_file({"sparsity": sparsity.contiguous()}, str(folder / SPARSITY))
                l0 = float(density.sum())
            rows.append(
                {
                    "id": sae_id,
                    "architecture": e.architecture,
                    "model": e.model or "",
                    "hook": e.hook or "",
                    "d_in": _d_in(folder),
                    "d_sae": e.d_sae,
                    "l0": None if l0 is None or not math.isfinite(l0) else round(l0, 4),
                }
            )
        models = sorted({r["model"] for r in rows if r["model"]}) or ["unknown"]
        write_text(tmp / "README.md", _card(repo_id, rows, models))
    return out


def _d_in(folder: Path) -> int | str:
    import json

    try:
        return int(json.loads((folder / CFG).read_text(encoding="utf-8"))["d_in"])
    except (OSError, ValueError, KeyError, TypeError):
        return "?"


def push(folder: str | Path, repo_id: str) -> str:
    """Upload ``folder`` to the model repo ``repo_id`` (created if needed); returns a line to print."""
    from sae.loading import _offline
    from sae.model import hub_reachable

    if _offline() or not hub_reachable():
        why = "disabled (HF_HUB_OFFLINE)" if _offline() else "unreachable"
        raise ConfigError(f"cannot push {folder} to {repo_id}: the Hugging Face hub is {why}; the folder is ready")
    from huggingface_hub import create_repo, upload_folder
    from huggingface_hub.errors import HfHubHTTPError

    try:
        create_repo(repo_id, repo_type="model", exist_ok=True)
        info = upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model")
    except (HfHubHTTPError, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"cannot push {folder} to {repo_id}: {first}") from None
    return f"pushed {folder} to https://huggingface.co/{repo_id} ({getattr(info, 'oid', '')})"
