"""``saelab sae list [--release R]`` and ``saelab sae info PATH_OR_RELEASE [SAE_ID] [--model M]``."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("sae", help="published SAE releases, and what a saved SAE is")
    cmds = parser.add_subparsers(dest="sae_command", metavar="COMMAND")
    cmds.required = True
    listing = cmds.add_parser("list", help="the releases load_sae knows (SAELens' directory when installed)")
    listing.add_argument("--release", help="list this release's SAE ids")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=_list)
    info = cmds.add_parser("info", help="load an SAE (directory, hf://org/repo/path[@rev], or release + id)")
    info.add_argument("source", help="a directory, hf://org/repo/path[@revision], or a release name")
    info.add_argument("sae_id", nargs="?", help="the SAE's id within the release")
    info.add_argument(
        "--model",
        help="also check it against this model (hook, width, processing); "
        "'auto' loads the model the SAE names, in the processing it needs",
    )
    info.add_argument("--device", default="cpu")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=_info)


def _list(args: argparse.Namespace) -> int:
    import json

    from sae import releases

    if args.release:
        entry = releases.release(args.release)
        rows = [{"id": s.id, "path": s.path, "l0": s.l0} for s in entry.saes.values()]
        if args.json:
            print(json.dumps({"release": entry.name, "repo_id": entry.repo_id, "model": entry.model, "saes": rows}))
            return 0
        print(f"{entry.name}: {entry.repo_id} (model {entry.model}, {entry.conversion})")
        for r in rows:
            print(f"  {r['id']}" + (f"  -> {r['path']}" if r["path"] != r["id"] else ""))
        return 0
    known = releases.releases()
    if args.json:
        rows = {n: {"repo_id": r.repo_id, "model": r.model, "n_saes": len(r.saes)} for n, r in known.items()}
        print(json.dumps(rows))
        return 0
    print(f"# from {releases.directory_source()}")
    width = max((len(n) for n in known), default=0)
    for name, r in known.items():
        print(f"{name:<{width}}  {r.model:<20} {len(r.saes):>4} SAEs  {r.repo_id}")
    return 0


def _info(args: argparse.Namespace) -> int:
    import json

    from sae.loading import load_sae
    from sae.processing import check_splice

    sae = load_sae(args.source, args.sae_id, device=args.device)
    out = {
        "source": getattr(sae, "source", args.source),
        "architecture": sae.cfg.architecture,
        "saelens_architecture": sae.family.saelens_architecture,
        "d_in": sae.cfg.d_in,
        "d_sae": sae.cfg.d_sae,
        "dtype": str(sae.W_enc.dtype).removeprefix("torch."),
        "hook": sae.hook,
        "model": sae.model_name,
        "processing": sae.processing.describe(),
        "normalize_activations": sae.input_normalization,
    }
    if args.model:
        from sae.model import load_model_for

        model, _ = load_model_for(sae, None if args.model == "auto" else args.model, device=args.device)
        check_splice(model, sae, what=f"the SAE {out['source']}")
        out["fits_model"] = args.model
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:<22} {v}")
    return 0
