"""explorer: how long the dashboard records take to build, and how long every page takes to answer.

**Precomputed** by ``saelab dashboard`` (timed here as ``builds``): per feature the
density, activation histograms (exact and SAEDashboard's 50 bins), top and interval
contexts with their windows, logit effects and their histogram, decoder neighbours,
correlated features and neurons, neuron alignment, per-head shares, and the token → top
features index of the Search page. **Computed on demand** by the pages (cached per
session): a prompt's codes (Prompt explorer, Search by prompt), steering (next-token
distributions and generations), the per-token loss effect of ablating a feature on its top
contexts (Feature dashboard), explanation and circuit/graph look-ups (files read).

- ``builds``: ``saelab dashboard`` (app.dashboard_data.build_run) for one topk SAE (k = 32)
  per ``--sizes`` entry (default 2,048 and 16,384 latents) on the organism's
  ``blocks.1.hook_resid_post`` over ``--n-tokens`` (default 2^20 ≥ 1M) tokens of the
  organism corpus; the model load is not counted. Without ``--run-dir`` the SAEs are
  randomly initialised: the build does the same work whatever the weights (k nonzeros per
  token either way). ``--measure-tokens`` builds over fewer tokens (after a small warm-up
  build) and reports ``build_s`` extrapolated to ``--n-tokens`` linearly from the larger
  measurement (an upper bound: the fixed costs, correlations over the first 65,536
  positions, decoder neighbours, the tables, are scaled too), with both measurements and the
  two-point fit (slope plus fixed cost; None when the noise of a shared machine makes the
  smaller build the slower) beside it.
- ``pages``: per page, the median and max wall time of a warm rerun through
  ``streamlit.testing`` AppTest (after one cold run), ``--pages`` reruns each, on the largest
  SAE's records (the Feature dashboard changes feature every rerun; its loss effect is
  computed on demand then, once per feature). Pages with nothing to show for a random run
  (Circuits, Supervised) are timed all the same.
Targets (issue 24): 16,384 latents × 1M tokens built in ≤ 600 s and every page ≤ 1 s, on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "app"
PAGES = {
    "runs": "Runs.py",
    "feature_browser": "pages/1_Feature_browser.py",
    "feature_dashboard": "pages/2_Feature_dashboard.py",
    "prompt_explorer": "pages/3_Prompt_explorer.py",
    "circuits": "pages/4_Circuits.py",
    "supervised": "pages/5_Supervised.py",
    "graph": "pages/6_Graph.py",
    "search": "pages/7_Search.py",
}
PRECOMPUTED = (
    "density, activation histograms (exact; 50-bin), top and interval contexts, logit effects and histogram, "
    "decoder neighbours, correlated features and neurons, neuron alignment, per-head shares, token index"
)
ON_DEMAND = (
    "prompt codes (Prompt explorer, Search by prompt), steering distributions and generations, per-token loss "
    "effect of ablating a feature, explanation and circuit/graph look-ups"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", help="a run directory holding one SAE (default: random topk SAEs of --sizes)")
    parser.add_argument("--n-tokens", type=int, default=1 << 20, help="dashboard tokens (default 1,048,576)")
    parser.add_argument("--sizes", default="2048,16384", help="latents of the random SAEs built (default 2048,16384)")
    parser.add_argument(
        "--measure-tokens",
        type=int,
        default=None,
        help="build over this many tokens (and half as many) and extrapolate to --n-tokens",
    )
    parser.add_argument("--pages", type=int, default=5, help="warm reruns timed per page (default 5)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _random_run(root: Path, d_sae: int) -> Path:
    import torch

    from sae.architectures import sae_class
    from sae.saving import save_sae

    cls = sae_class("topk")
    torch.manual_seed(0)
    save_sae(
        cls(cls.config_class(d_in=128, d_sae=d_sae, k=32)),
        root / "topk",
        metadata={"hook": "blocks.1.hook_resid_post", "model": "organism", "name": "topk"},
    )
    return root


def _build(root: Path, n_tokens: int, model, tok, quiet: bool) -> float:
    from app.dashboard_config import DashboardConfig
    from app.dashboard_data import build_run

    cfg = DashboardConfig(n_tokens=n_tokens, lm_batch_size=128)
    start = time.perf_counter()
    build_run(root, cfg, progress=not quiet, model=model, tokenizer=tok)
    return time.perf_counter() - start


def _time_pages(root: Path, entry, n: int) -> dict:
    from streamlit.testing.v1 import AppTest

    os.environ["SAELAB_RUN_DIRS"] = str(root)
    out = {}
    for name, rel in PAGES.items():
        at = AppTest.from_file(str(APP / rel), default_timeout=300)
        at.query_params["sae"] = entry.name
        at.run()  # cold: imports, the feature table, the model
        if at.exception:
            raise RuntimeError(f"{name} page raised: {at.exception[0].value}")
        times = []
        for i in range(1, n + 1):
            if name == "feature_dashboard":
                at.number_input(key="feature_id").set_value(i * 97 % entry.d_sae)
            t0 = time.perf_counter()
            at.run()
            times.append(time.perf_counter() - t0)
            if at.exception:
                raise RuntimeError(f"{name} page raised: {at.exception[0].value}")
        out[name] = {"median_s": round(statistics.median(times), 3), "max_s": round(max(times), 3)}
    return out


def run(args: argparse.Namespace) -> dict:
    import torch

    from app.run_dir import model_name
    from sae.model import load_model
    from sae.run_dir import find_saes

    quiet = getattr(args, "quiet", False)
    builds = []
    with tempfile.TemporaryDirectory(prefix="saelab_bench_explorer_") as tmp:
        if args.run_dir:
            roots = [Path(args.run_dir)]
        else:
            sizes = [int(s) for s in str(args.sizes).split(",") if s.strip()]
            roots = [_random_run(Path(tmp) / f"d{d}", d) for d in sizes]
        model = tok = None
        for root in roots:
            entry = find_saes(root, strict=False)[0]
            if model is None:
                model, tok = load_model(model_name(entry))
            row = {"d_sae": entry.d_sae, "n_tokens": args.n_tokens}
            if args.measure_tokens:
                _build(root, 8192, model, tok, True)  # warm-up: first-call costs are not the build's
                half = args.measure_tokens // 2
                t_half = _build(root, half, model, tok, quiet)
                t_full = _build(root, args.measure_tokens, model, tok, quiet)
                linear = t_full * args.n_tokens / args.measure_tokens  # every second scaled: an upper bound
                slope = (t_full - t_half) / (args.measure_tokens - half)
                fit = t_half - slope * half + slope * args.n_tokens if slope > 0 else None
                row.update(
                    build_s=round(linear, 1),
                    extrapolated=True,
                    measured={str(half): round(t_half, 1), str(args.measure_tokens): round(t_full, 1)},
                    linear_upper_s=round(linear, 1),
                    two_point_fit_s=None if fit is None else round(fit, 1),
                )
            else:
                row.update(build_s=round(_build(root, args.n_tokens, model, tok, quiet), 1), extrapolated=False)
            builds.append(row)
        largest = find_saes(roots[-1], strict=False)[0]
        pages = _time_pages(roots[-1], largest, args.pages)
    first = builds[0]
    return {
        "builds": builds,
        "pages": pages,
        "pages_d_sae": largest.d_sae,
        "precomputed": PRECOMPUTED,
        "on_demand": ON_DEMAND,
        # the figures earlier runs reported, for the results page
        "dashboard_build_s": first["build_s"],
        "dashboard_tokens": args.n_tokens,
        "d_sae": first["d_sae"],
        "hook": largest.hook,
        "feature_page_s": pages["feature_dashboard"]["median_s"],
        "feature_page_max_s": pages["feature_dashboard"]["max_s"],
        "torch_threads": torch.get_num_threads(),
        "targets": {"dashboard_build_s_16384": 600, "page_s": 1.0},
    }
