"""Security: nothing is unpickled, configs run no code, the explorer stays local and inside its run dirs.

The canary: ``bad_files.pickle_payload(marker)`` creates ``marker`` when unpickled. Every
loader of the code base is offered it under the name that loader reads (weights, trainer
checkpoints, cache manifests and shards, token datasets, model directories, dashboards,
results files) and must refuse it with a ``SaelabError`` (or skip it, for readers that scan
a directory for results) while the marker never appears.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from bad_files import pickle_payload, saved_sae, torch_save_payload

from sae.errors import SaelabError

ROOT = Path(__file__).resolve().parents[2]


# ---- the canary -----------------------------------------------------------------------------


def _sae_file(name: str, torch_zip: bool = False):
    def offer(tmp: Path, marker: Path, **_):
        from sae.saving import load_sae

        saved_sae(tmp / "sae")
        target = tmp / "sae" / name
        torch_save_payload(marker, target) if torch_zip else target.write_bytes(pickle_payload(marker))
        load_sae(tmp / "sae")

    return offer


def _trainer(run_dir: Path):
    from sae.architectures import sae_class
    from sae.trainer import Member, Trainer, TrainerConfig

    cls = sae_class("topk")
    sae = cls(cls.config_class(architecture="topk", d_in=16, d_sae=32, k=4))
    return Trainer(
        [Member.reading("topk", sae)], TrainerConfig(batch_size=8, wandb_project=None), run_dir, progress=False
    )


def _checkpoint(name: str):
    def offer(tmp: Path, marker: Path, **_):
        from sae.checkpoint import load_checkpoint, save_checkpoint

        ckpt = save_checkpoint(tmp / "run", _trainer(tmp / "run").state_dict())
        (ckpt / name).write_bytes(pickle_payload(marker))
        if name == "state.safetensors":  # a consistent forgery: the checksum matches the payload
            meta = json.loads((ckpt / "state.json").read_text())
            meta["sha256"] = hashlib.sha256((ckpt / name).read_bytes()).hexdigest()
            (ckpt / "state.json").write_text(json.dumps(meta))
        _trainer(tmp / "run").load_state_dict(load_checkpoint(tmp / "run"))

    return offer


def _cache_copy(tmp: Path, cache: Path) -> Path:
    shutil.copytree(cache, tmp / "cache")
    return tmp / "cache"


def _cache_manifest(tmp: Path, marker: Path, cache: Path):
    from sae.cache import CachedStore

    root = _cache_copy(tmp, cache)
    (root / "manifest.json").write_bytes(pickle_payload(marker))
    CachedStore(root)


def _cache_shard(object_array: bool):
    def offer(tmp: Path, marker: Path, cache: Path):
        from bad_files import _Touch

        from sae.cache import CachedStore

        root = _cache_copy(tmp, cache)
        manifest = json.loads((root / "manifest.json").read_text())
        entry = manifest["shards"][0]["files"]["blocks.1.hook_resid_post"]
        shard = root / entry["path"]
        if object_array:  # a real .npy whose object array unpickles the payload
            with open(shard, "wb") as f:
                np.save(f, np.array([_Touch(marker)] * 4, dtype=object).reshape(2, 2), allow_pickle=True)
        else:
            shard.write_bytes(pickle_payload(marker))
        entry["sha256"] = hashlib.sha256(shard.read_bytes()).hexdigest()
        (root / "manifest.json").write_text(json.dumps(manifest))
        store = CachedStore(root)
        for _ in store.batches(64):
            pass

    return offer


def _tokens_dataset(name: str):
    def offer(tmp: Path, marker: Path, **_):
        import datasets

        from sae.text import TextSource, iter_token_rows

        path = tmp / "tokens"
        datasets.Dataset.from_dict({"tokens": [[0] * 40] * 4}).save_to_disk(str(path))
        for f in path.glob(name):
            f.write_bytes(pickle_payload(marker))
        list(iter_token_rows(TextSource(kind="tokens", path=str(path)), 32))

    return offer


def _model_dir(name: str):
    def offer(tmp: Path, marker: Path, **_):
        from sae import providers
        from sae.model import load_model

        model = tmp / "model"
        shutil.copytree(providers.get("organism").model_dir, model)
        (model / "model.safetensors").unlink()
        if name == "pytorch_model.bin":
            torch_save_payload(marker, model / name)
        else:
            (model / name).write_bytes(pickle_payload(marker))
        load_model(str(model))

    return offer


def _dashboard(name: str):
    def offer(tmp: Path, marker: Path, **_):
        from app.dashboard_data import read_contexts, read_features

        saved_sae(tmp / "sae")
        (tmp / "sae" / "dashboard").mkdir()
        (tmp / "sae" / "dashboard" / name).write_bytes(pickle_payload(marker))
        read_features(tmp / "sae") if name == "features.parquet" else read_contexts(tmp / "sae", 0)

    return offer


def _parquet_extension_type(tmp: Path, marker: Path, **_):
    """The pyarrow ``arrow.py_extension_type`` hole (CVE-2023-47248): the payload as an
    extension type's serialized metadata in a real parquet file; it must be read as plain data."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from app.dashboard_data import read_features

    field = pa.field(
        "feature",
        pa.int32(),
        metadata={
            b"ARROW:extension:name": b"arrow.py_extension_type",
            b"ARROW:extension:metadata": pickle_payload(marker),
        },
    )
    (tmp / "sae" / "dashboard").mkdir(parents=True)
    pq.write_table(
        pa.table({"feature": pa.array([1, 2], pa.int32())}, schema=pa.schema([field])),
        tmp / "sae" / "dashboard" / "features.parquet",
    )
    assert read_features(tmp / "sae").feature.tolist() == [1, 2]


def _results_scan(tmp: Path, marker: Path, **_):
    """Readers that scan a directory for results skip what is not JSON."""
    from app.run_dir import find_results
    from evals.report import find_results as report_results

    saved_sae(tmp / "run" / "sae")
    for name in ("results.json", "sweep_summary.json", "circuit_ioi.json", "supervised.json"):
        (tmp / "run" / name).write_bytes(pickle_payload(marker))
    assert all(find_results(tmp / "run", kind) == [] for kind in ("sweep", "eval", "circuit", "supervised"))
    assert report_results(tmp / "run") == {}


def _run_config(tmp: Path, marker: Path, **_):
    """A run directory's run_config.json, read by 'saelab train' (resume) and the eval suite."""
    from evals.suite import train_seed
    from sae.train_run import RunConfig, check_run_dir

    (tmp / "run").mkdir()
    (tmp / "run" / "run_config.json").write_bytes(pickle_payload(marker))
    assert train_seed(tmp / "run") == (None, None, None)
    check_run_dir(
        RunConfig.model_validate({"saes": [{"hook": "h", "sae": {"architecture": "topk", "d_sae": 8, "k": 2}}]}),
        tmp / "run",
    )


def _supervised_identity(tmp: Path, marker: Path, **_):
    from evals.supervised.runner import _claim

    (tmp / "out" / "saes").mkdir(parents=True)
    (tmp / "out" / "saes" / "identity.json").write_bytes(pickle_payload(marker))
    _claim(tmp / "out", {"model": "organism"})


def _explorer_cfg(tmp: Path, marker: Path, **_):
    from sae.run_dir import find_saes

    saved_sae(tmp / "run" / "sae")
    (tmp / "run" / "sae" / "cfg.json").write_bytes(pickle_payload(marker))
    find_saes(tmp / "run", strict=False)


LOADERS = {
    "sae_weights": _sae_file("sae_weights.safetensors"),
    "sae_weights_torch_save": _sae_file("sae_weights.safetensors", torch_zip=True),
    "sae_extra_state": _sae_file("saelab_state.safetensors"),
    "sae_cfg_json": _sae_file("cfg.json"),
    "checkpoint_tensors": _checkpoint("state.safetensors"),
    "checkpoint_metadata": _checkpoint("state.json"),
    "cache_manifest": _cache_manifest,
    "cache_shard": _cache_shard(object_array=False),
    "cache_shard_object_npy": _cache_shard(object_array=True),
    "tokens_dataset_arrow": _tokens_dataset("*.arrow"),
    "tokens_dataset_info": _tokens_dataset("*.json"),
    "model_dir_pytorch_bin": _model_dir("pytorch_model.bin"),
    "model_dir_safetensors": _model_dir("model.safetensors"),
    "model_dir_tokenizer": _model_dir("tokenizer.json"),
    "dashboard_features": _dashboard("features.parquet"),
    "dashboard_contexts": _dashboard("contexts.parquet"),
    "dashboard_parquet_extension_type": _parquet_extension_type,
    "results_files": _results_scan,
    "run_config": _run_config,
    "supervised_identity": _supervised_identity,
    "explorer_cfg_json": _explorer_cfg,
}
#: loaders that scan for or tolerate a bad file (skip it, or read plain data) rather than refusing
TOLERANT = {"dashboard_parquet_extension_type", "results_files"}


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_pickle_canary(loader, tmp_path, request):
    marker = tmp_path / "PAYLOAD_RAN"
    cache = request.getfixturevalue("small_cache") if loader.startswith("cache_") else None
    if loader in TOLERANT:
        LOADERS[loader](tmp_path, marker, cache=cache)
    else:
        with pytest.raises(SaelabError) as err:
            LOADERS[loader](tmp_path, marker, cache=cache)
        assert "\n" not in str(err.value)
    assert not marker.exists(), f"{loader} unpickled the payload"


def test_the_canary_is_live(tmp_path):
    """The payload would run ``touch marker`` if unpickled, so its absence above means
    something. Read statically (``pickletools`` disassembles, it never executes): the
    pickle imports ``os.system`` and calls it on the touch command."""
    import os
    import pickletools

    marker = tmp_path / "PAYLOAD_RAN"
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(pickle_payload(marker))]
    strings = [arg for name, arg in ops if isinstance(arg, str)]
    names = [name for name, _ in ops]
    assert os.system.__module__ in strings and "system" in strings  # STACK_GLOBAL's module and name
    assert f"touch '{marker}'" in strings and "STACK_GLOBAL" in names and "REDUCE" in names
    assert names.index("STACK_GLOBAL") < names.index("REDUCE")
    assert not marker.exists()


# ---- the source scan ------------------------------------------------------------------------

SCANNED = ("sae", "circuits", "evals", "app", "saelab", "bench", "organism")
FORBIDDEN = [
    (
        re.compile(
            r"^\s*import\s+(pickle|cPickle|_pickle|dill|cloudpickle|joblib|shelve|marshal)\b"
            r"|^\s*from\s+(cPickle|_pickle|dill|cloudpickle|joblib|shelve|marshal)\b"
            r"|^\s*from\s+pickle\s+import\s+(?!(UnpicklingError|PicklingError)\b)"
        ),
        "imports a pickle-based module (only pickle's exception types may be imported)",
    ),
    (re.compile(r"\b(pickle|dill|cloudpickle|joblib|marshal|_pickle)\.(loads?|Unpickler)\b"), "unpickles"),
    (re.compile(r"\btorch\.load\((?![^)]*weights_only\s*=\s*True)"), "torch.load without weights_only=True"),
    (re.compile(r"\bnp\.load\([^)]*allow_pickle\s*=\s*True"), "np.load with allow_pickle=True"),
    (re.compile(r"\b(pd|pandas)\.read_pickle\("), "pandas.read_pickle"),
    (re.compile(r"(?<![\w.])(eval|exec)\("), "eval/exec"),
    (
        re.compile(
            r"\byaml\.(unsafe_load|full_load|load_all)\(|\byaml\.(Loader|FullLoader|UnsafeLoader)\b"
            r"|\byaml\.load\((?![^)]*SafeLoader)"
        ),
        "YAML loading that can construct objects",
    ),
    (re.compile(r"trust_remote_code\s*=\s*True"), "runs a model repository's code"),
]


def _python_sources() -> list[tuple[str, str]]:
    out = []
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            if ".peers" in path.parts or ".cache" in path.parts:
                continue
            out.append((str(path.relative_to(ROOT)), path.read_text(encoding="utf-8")))
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb.read_text(encoding="utf-8")).get("cells", [])
        code = "\n".join("".join(c.get("source", [])) for c in cells if c.get("cell_type") == "code")
        out.append((str(nb.relative_to(ROOT)), code))
    return out


def scan(sources: list[tuple[str, str]]) -> list[str]:
    hits = []
    for name, text in sources:
        for number, line in enumerate(text.splitlines(), 1):
            code = line.split("#", 1)[0] if not line.lstrip().startswith(("'", '"')) else line
            for pattern, why in FORBIDDEN:
                if pattern.search(code):
                    hits.append(f"{name}:{number}: {why}: {line.strip()}")
    return hits


def test_source_scan_finds_nothing():
    assert scan(_python_sources()) == []


def _unsafe_samples() -> list[str]:
    """Lines the scan must flag, composed from parts so that this file holds no unsafe-load
    text of its own for a repository-wide grep to find."""
    mods = ("pick" + "le", "di" + "ll")
    load = "lo" + "ad"
    return [
        f"import {mods[0]}",
        f"import {mods[1]}",
        f"from job{'lib'} import {load}",
        f"from {mods[0]} import {load}s",
        f"x = {mods[0]}.{load}s(b)",
        f"torch.{load}(path)",
        f"torch.{load}(path, map_location='cpu')",
        f"np.{load}(p, allow_pickle=True)",
        f"pd.read_{mods[0]}(p)",
        "value = ev" + "al(cfg['expr'])",
        "ex" + "ec(code)",
        f"yaml.{load}(text)",
        f"yaml.{load}(text, Loader=yaml.FullLoader)",
        f"yaml.unsafe_{load}(text)",
        "AutoModel.from_pretrained(n, trust_remote_code=True)",
    ]


@pytest.mark.parametrize("line", _unsafe_samples())
def test_source_scan_catches(line):
    assert scan([("new.py", line)]), line


@pytest.mark.parametrize(
    "line",
    [
        "from pickle import UnpicklingError",
        "torch.load(path, weights_only=True)",
        "np.load(p, allow_pickle=False)",
        "yaml.safe_load(text)",
        "yaml.load(text, Loader=yaml.SafeLoader)",
        "model.eval()",
        "sae.eval()",
    ],
)
def test_source_scan_allows(line):
    assert scan([("new.py", line)]) == [], line


# ---- configs cannot execute code ------------------------------------------------------------

TAGS = [
    '!!python/object/apply:os.system ["touch {marker}"]',
    '!!python/object/new:subprocess.Popen [["touch", "{marker}"]]',
    "!!python/name:os.system",
    "!!python/module:os",
    "!!python/object:argparse.Namespace {a: 1}",
]


@pytest.mark.parametrize("tag", TAGS)
def test_yaml_tags_are_refused(tag, tmp_path):
    from sae.config import read_yaml
    from sae.errors import ConfigError

    marker = tmp_path / "PAYLOAD_RAN"
    cfg = tmp_path / "run.yaml"
    cfg.write_text("trainer:\n  lr: " + tag.replace("{marker}", str(marker)) + "\n")
    with pytest.raises(ConfigError, match=r"run.yaml: YAML tag '!!python/.*' at line 2 is not allowed"):
        read_yaml(cfg)
    assert not marker.exists()


def test_set_overrides_stay_plain_strings(tmp_path):
    from sae.config import parse_overrides

    marker = tmp_path / "PAYLOAD_RAN"
    raw = f'!!python/object/apply:os.system ["touch {marker}"]'
    assert parse_overrides([f"trainer.lr={raw}"]) == {"trainer": {"lr": raw}}
    assert not marker.exists()


# ---- the explorer: local by default, reads only inside its run dirs --------------------------


def _explore_command(monkeypatch, argv: list[str]) -> list[str]:
    import os

    from saelab.cli import main

    seen = []

    def fake_exec(path, cmd):
        seen.append(cmd)
        raise SystemExit(0)

    monkeypatch.setattr(os, "execv", fake_exec)
    with pytest.raises(SystemExit):
        main(["explore", *argv])
    return seen[0]


def test_explorer_binds_to_localhost_unless_told(tmp_path, monkeypatch):
    saved_sae(tmp_path / "run")
    cmd = _explore_command(monkeypatch, [str(tmp_path / "run")])
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    cmd = _explore_command(monkeypatch, [str(tmp_path / "run"), "--host", "0.0.0.0"])
    assert cmd[cmd.index("--server.address") + 1] == "0.0.0.0"


@pytest.fixture
def escaping_run(tmp_path):
    """A run dir with one real SAE and three ways out: a symlinked SAE directory, an SAE
    whose weights link outside, and a results file linking outside."""
    outside = tmp_path / "outside"
    saved_sae(outside / "secret_sae")
    (outside / "results.json").write_text(json.dumps({"kind": "eval", "secret": True}))
    run = tmp_path / "run"
    saved_sae(run / "inside")
    (run / "linked_dir").symlink_to(outside / "secret_sae", target_is_directory=True)
    saved_sae(run / "linked_weights")
    (run / "linked_weights" / "sae_weights.safetensors").unlink()
    (run / "linked_weights" / "sae_weights.safetensors").symlink_to(outside / "secret_sae" / "sae_weights.safetensors")
    (run / "results.json").symlink_to(outside / "results.json")
    return run


def test_run_dir_readers_stay_inside(escaping_run):
    from app.run_dir import find_results
    from sae.run_dir import find_saes

    assert [e.path.name for e in find_saes(escaping_run, strict=False)] == ["inside"]
    assert find_results(escaping_run, "eval") == []
    # a command (the evals, the CLI) refuses such a run instead of leaving SAEs out
    with pytest.raises(SaelabError, match="links outside the run directory"):
        find_saes(escaping_run)


def test_query_params_cannot_leave_the_run_dir(escaping_run, monkeypatch):
    """``?sae=`` only chooses among the SAEs found inside; a path in it selects nothing else."""
    from streamlit.testing.v1 import AppTest

    def page():
        import streamlit as st

        from app.common import all_saes, pick_sae

        entry = pick_sae(all_saes())
        st.text(str(entry.path))

    monkeypatch.setenv("SAELAB_RUN_DIRS", str(escaping_run))
    for wanted in ("../outside/secret_sae", "../../etc", "linked_dir", str(escaping_run.parent / "outside")):
        at = AppTest.from_function(page, default_timeout=60)
        at.query_params["sae"] = wanted
        at.run()
        assert not at.exception
        assert at.text[0].value == str(escaping_run / "inside")
        assert at.selectbox[0].options == ["inside · organism"]  # name · model
