"""``saelab demo``: the lab end to end on the embedded organism, in a few minutes on a CPU.

Each stage prints what it found and where its results are. Stages grow as the lab does.
"""

from __future__ import annotations

import argparse
import json
import shlex
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("demo", help="run the lab end to end on the embedded model organism")
    parser.add_argument("--out", default="runs/demo", help="where results go (default runs/demo)")
    parser.set_defaults(func=run)


def _say(text: str) -> None:
    print(text, flush=True)


def _stage_organism(out: Path) -> dict:
    from organism.evaluate import evaluate
    from sae.atomic import write_json
    from sae.model import load_model

    _say("== 1. The model organism ==")
    model, tokenizer = load_model("organism")
    result = evaluate(lambda t: model(t), tokenizer, n_prompts=550)
    result["n_layers"], result["n_heads_total"] = model.cfg.n_layers, model.cfg.n_layers * model.cfg.n_heads
    write_json(out / "organism_eval.json", result)
    _say(
        f"  {model.cfg.n_layers} layers x {model.cfg.n_heads} heads, d_model {model.cfg.d_model}, "
        f"vocabulary {model.cfg.d_vocab}"
    )
    _say(f"  IOI (held-out names): accuracy {result['ioi_accuracy']:.3f}, logit diff {result['ioi_logit_diff']:.2f}")
    ht = result["heldout_template"]
    _say(f"  IOI (template never trained on): accuracy {ht['accuracy']:.3f}, logit diff {ht['logit_diff']:.2f}")
    _say(f"  greater-than: probability difference {result['greater_than_prob_diff']:.3f}")
    return result


def _stage_circuits() -> None:
    from organism.provider import CIRCUITS

    _say("== 2. Its ground-truth circuits (path patching, frozen in organism/circuits.json) ==")
    data = json.loads(CIRCUITS.read_text())
    for key in ("ioi", "greater_than"):
        c = data[key]
        roles: dict[str, list[str]] = {}
        for node in c["nodes"]:
            roles.setdefault(node["role"], []).append(node["node"])
        f = c["faithfulness"]
        _say(f"  {c['task']}: " + "; ".join(f"{r}: {', '.join(n)}" for r, n in roles.items()))
        _say(
            f"    circuit alone recovers {f['circuit_recovers']:.0%} of the metric; "
            f"ablating it leaves {f['ablated_leaves']:.0%}"
        )


def _stage_evals(out: Path) -> None:
    """Train two small SAEs (residual stream, attention hook_z), evaluate them and write the report."""
    from evals.suite import run_suite
    from evals.suite_config import SuiteConfig
    from sae.train_run import RunConfig, train

    _say("== 4. Train small SAEs and evaluate them (saelab train + saelab eval) ==")
    run_dir = out / "sae_run"
    cfg = RunConfig.model_validate(
        {
            "data": {"model": "organism", "n_tokens": 250_000, "context_size": 64, "lm_batch_size": 128},
            "saes": [
                {
                    "name": "topk",
                    "hook": "blocks.1.hook_resid_post",
                    "sae": {"architecture": "topk", "d_sae": 1024, "k": 16},
                },
                {
                    "name": "attn",
                    "hook": "blocks.1.attn.hook_z",
                    "sae": {"architecture": "topk", "d_sae": 512, "k": 16},
                },
            ],
            "trainer": {"batch_size": 2048, "wandb_project": None},
            "heldout": None,
        }
    )
    train(cfg, run_dir, progress=True)
    suite = SuiteConfig.model_validate(
        {
            "data": {"n_tokens": 16_384},
            "mean_ablation": {"n_tokens": 16_384},
            "synthetic": {"enabled": True, "configs": ["easy"], "steps": 400},
        }
    )
    results = run_suite(suite, [run_dir], out / "eval", progress=True)
    for s in results["saes"]:
        m = s["metrics"]
        _say(
            f"  {s['name']} on {s['hook']}: L0 {m['l0']:.1f}, FVU {m['fvu']:.3f}, CE recovered "
            f"{m['ce_loss_recovered_zero']:.3f} (vs zero) / {m['ce_loss_recovered_mean']:.3f} (vs mean), "
            f"KL {m['kl_div']:.4f}"
        )
    easy = results["synthetic"]["easy"]["families"]
    _say("  synthetic ground truth (easy): " + ", ".join(f"{f} MCC {v['mcc']:.2f}" for f, v in easy.items()))
    _say(f"  report: {(out / 'eval' / 'report.html').resolve()}")


def _stage_discrete_sae(out: Path) -> None:
    from circuits.demo import ioi_circuit_lines

    _say("== 3. The IOI circuit found by the discrete-SAE method (O'Neill & Bui), next to the ground truth ==")
    for line in ioi_circuit_lines(out):
        _say("  " + line)


def _stage_supervised(out: Path) -> None:
    from evals.supervised.cli import QUICK
    from evals.supervised.config import SupervisedConfig
    from evals.supervised.runner import run as run_supervised

    _say("== 5. Supervised dictionaries: are SAE features the IOI variables? (Makelov et al. 2024) ==")
    small = {
        "prompts": {"n_fit": 1000, "n_eval": 200, "n_heldout_template": 60},
        "saes": {**QUICK["saes"], "full_tokens": 65536, "architectures": ["relu", "topk"]},
    }
    doc = run_supervised(SupervisedConfig.model_validate({**QUICK, **small}), out / "supervised", progress=False)
    acc = doc["acceptance"]
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    _say(
        f"  {acc['cross_section']}: mean-feature dictionary sufficiency {fmt(acc['supervised_mean_sufficiency'])}, "
        f"control success {fmt(acc['supervised_mean_control'])}"
    )
    for row in doc["table"]:
        if row["kind"] != "supervised":
            _say(
                f"  {row['label']:<36} L0 {row['l0']:5.2f}  sufficiency {fmt(row['sufficiency'])}  "
                f"necessity {fmt(row['necessity'])}  control {fmt(row['control'])}"
            )
    _say(f"  report: {out / 'supervised' / 'report.html'}")


def _stage_explorer(out: Path) -> None:
    """Dashboard records for the SAEs of stage 4, then the command that opens the explorer."""
    from app.dashboard_config import DashboardConfig
    from app.dashboard_data import build_run

    _say("== 6. Feature dashboards and the explorer (saelab dashboard + saelab explore) ==")
    paths = build_run(out / "sae_run", DashboardConfig(n_tokens=131_072), progress=True)
    _say("  dashboard records: " + ", ".join(str(p) for p in paths))
    # the whole demo directory: its SAEs, and the sweep, eval, circuit and supervised results below it
    _say(f"  explore everything with:\n    saelab explore {shlex.quote(str(out.resolve()))}")


def run(args: argparse.Namespace) -> int:
    start = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _stage_organism(out)
    _stage_circuits()
    _stage_discrete_sae(out)
    _stage_evals(out)
    _stage_supervised(out)
    _stage_explorer(out)
    _say(f"\nDone in {time.time() - start:.0f} s. Results: {out.resolve()}")
    return 0
