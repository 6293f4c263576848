"""explorer: how long the dashboard records take to build, and a warm feature page to render.

- ``dashboard_build_s``: ``saelab dashboard`` (app.dashboard_data.build_run) for one
  2,048-latent topk SAE on the organism's ``blocks.1.hook_resid_post`` over ``--n-tokens``
  (default 2^20 ≥ 1M) tokens of the organism corpus; the model load is not counted.
  Without ``--run-dir`` the SAE is randomly initialised (k = 32): the build does the same
  work whatever the weights (the codes have k nonzeros per token either way).
- ``feature_page_s``: median wall time of a warm rerun of the Feature dashboard page
  through ``streamlit.testing`` AppTest, over ``--pages`` different features.
Targets (issue 8): ≤ 180 s and ≤ 1 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", help="a run directory holding one SAE (default: a random 2048-latent topk SAE)")
    parser.add_argument("--n-tokens", type=int, default=1 << 20, help="dashboard tokens (default 1,048,576)")
    parser.add_argument("--pages", type=int, default=5, help="feature pages timed (default 5)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _random_run(root: Path) -> Path:
    import torch

    from sae.architectures import sae_class
    from sae.saving import save_sae

    cls = sae_class("topk")
    torch.manual_seed(0)
    save_sae(
        cls(cls.config_class(d_in=128, d_sae=2048, k=32)),
        root / "topk",
        metadata={"hook": "blocks.1.hook_resid_post", "model": "organism", "name": "topk"},
    )
    return root


def run(args: argparse.Namespace) -> dict:
    import torch
    from streamlit.testing.v1 import AppTest

    from app.dashboard_config import DashboardConfig
    from app.dashboard_data import build_run
    from app.run_dir import model_name
    from sae.model import load_model
    from sae.run_dir import find_saes

    with tempfile.TemporaryDirectory(prefix="saelab_bench_explorer_") as tmp:
        root = Path(args.run_dir) if args.run_dir else _random_run(Path(tmp))
        entry = find_saes(root, strict=False)[0]
        model, tok = load_model(model_name(entry))
        cfg = DashboardConfig(n_tokens=args.n_tokens, lm_batch_size=128)
        start = time.perf_counter()
        build_run(root, cfg, progress=not getattr(args, "quiet", False), model=model, tokenizer=tok)
        build_s = time.perf_counter() - start
        os.environ["SAELAB_RUN_DIRS"] = str(root)
        page = Path(__file__).resolve().parents[1] / "app" / "pages" / "2_Feature_dashboard.py"
        at = AppTest.from_file(str(page), default_timeout=120)
        at.query_params["sae"] = entry.name
        at.run()  # cold: imports and the feature table
        times = []
        for feature in range(1, args.pages + 1):
            at.number_input(key="feature_id").set_value(feature * 97 % entry.d_sae)
            t0 = time.perf_counter()
            at.run()
            times.append(time.perf_counter() - t0)
            if at.exception:
                raise RuntimeError(f"feature page raised: {at.exception[0].value}")
    return {
        "dashboard_build_s": round(build_s, 1),
        "dashboard_tokens": args.n_tokens,
        "d_sae": entry.d_sae,
        "hook": entry.hook,
        "feature_page_s": round(statistics.median(times), 3),
        "feature_page_max_s": round(max(times), 3),
        "torch_threads": torch.get_num_threads(),
        "targets": {"dashboard_build_s": 180, "feature_page_s": 1.0},
        "note": "2-core machine shared with other jobs while measured",
    }
