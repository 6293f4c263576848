"""``saelab export neuronpedia RUN_DIR --out DIR`` and ``saelab export hf RUN_DIR REPO_ID``."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write a run's SAEs for other tools: Neuronpedia's feature JSON, a Hugging Face repo folder",
        description="Export the SAEs of a run directory in the formats the field's tools read.",
    )
    kinds = p.add_subparsers(dest="export_kind", metavar="FORMAT")
    kinds.required = True
    n = kinds.add_parser(
        "neuronpedia",
        help="SAEDashboard's NeuronpediaRunner layout (batch-N.json, run_settings.json, skipped_indexes.json)",
        description="Convert the dashboard build of every SAE in RUN_DIR (run `saelab dashboard RUN_DIR` "
        "first) into OUT/{model}_{sae set}_{hook}_{d_sae}/batch-{n}.json, run_settings.json and "
        "skipped_indexes.json, as sae_dashboard's NeuronpediaRunner writes them for Neuronpedia's uploader.",
    )
    n.add_argument("run_dir", metavar="RUN_DIR")
    n.add_argument("--out", required=True, metavar="DIR", help="output folder (must be empty unless --force)")
    n.add_argument("--force", action="store_true", help="replace a non-empty output folder")
    n.add_argument("--sae-set", help="Neuronpedia SAE set name (default: the SAE's name)")
    n.add_argument("--features-per-batch", type=int, default=128, help="features per batch file (default 128)")
    n.add_argument(
        "--sparsity-threshold", type=float, default=-6.0, help="skip features below this log10 density (default -6)"
    )
    n.set_defaults(func=neuronpedia_main)

    h = kinds.add_parser(
        "hf",
        help="a Hugging Face model repo folder in SAELens' pretrained layout (uploads only with --push)",
        description="Write OUT/<sae id>/{cfg.json,sae_weights.safetensors[,sparsity.safetensors]} for every "
        "SAE in RUN_DIR, and a README.md model card with a pretrained_saes.yaml entry. Nothing is uploaded "
        "unless --push is given.",
    )
    h.add_argument("run_dir", metavar="RUN_DIR")
    h.add_argument("repo_id", metavar="REPO_ID", help="the Hugging Face repo, e.g. you/organism-saes")
    h.add_argument("--out", metavar="DIR", help="output folder (default: ./hf-<repo name>)")
    h.add_argument("--force", action="store_true", help="replace a non-empty output folder")
    h.add_argument("--push", action="store_true", help="upload the folder with huggingface_hub.upload_folder")
    h.set_defaults(func=hf_main)


def neuronpedia_main(args: argparse.Namespace) -> int:
    from app.export_neuronpedia import export_run

    for path in export_run(
        args.run_dir,
        args.out,
        force=args.force,
        sae_set=args.sae_set,
        n_features_at_a_time=args.features_per_batch,
        sparsity_threshold=args.sparsity_threshold,
    ):
        print(f"wrote {path}")
    return 0


def hf_main(args: argparse.Namespace) -> int:
    from app.export_hf import export_hf, push

    out = export_hf(args.run_dir, args.repo_id, args.out, force=args.force)
    print(f"wrote {out}")
    if args.push:
        print(push(out, args.repo_id))
    return 0
