"""``saelab cache CONFIG``: harvest activations to an on-disk cache (resumable)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML store config (see configs/cache_organism.yaml)")
    parser.add_argument("--out", help="cache directory (overrides cache_dir in the config)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--nproc", type=int, default=1, help="processes sharing the harvest, each writing its own shards (default 1)"
    )


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("cache", help="harvest activations into an on-disk cache (kill and rerun to resume)")
    add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import time

    from sae.cache import write_cache
    from sae.config import load_config
    from sae.distributed import forward_argv, from_environment, in_torchrun, launch, shutdown
    from sae.errors import ConfigError
    from sae.store import StoreConfig, load_for

    cfg = load_config(StoreConfig, args.config, args.set)
    if args.out:
        cfg = cfg.model_copy(update={"cache_dir": args.out})
    if cfg.cache_dir is None:
        raise ConfigError(f"{args.config}: key 'cache_dir': required for caching (or pass --out)")
    if args.nproc > 1 and not in_torchrun():
        return launch("sae.cli_cache", forward_argv(args, ["config"], ["out", "set", "quiet"]), args.nproc)
    start = time.time()
    collective = from_environment(cfg.device)
    try:
        # Load the model even when the cache is complete: its weights are checked against the
        # fingerprint in the manifest, so a stale cache is reported instead of reused.
        model, tokenizer = load_for(cfg)
        manifest = write_cache(cfg, model, tokenizer, progress=not args.quiet, collective=collective)
    finally:
        shutdown()
    if collective.rank != 0:
        return 0
    seconds = time.time() - start
    hooks = ", ".join(f"{h} (d_in {m['d_in']})" for h, m in manifest["hooks"].items())
    print(
        f"cache {cfg.cache_dir}: {manifest['rows']:,} rows x [{hooks}] in {len(manifest['shards'])} shards "
        f"({seconds:.0f} s)"
    )
    return 0


if __name__ == "__main__":  # one rank of 'saelab cache --nproc N' (torchrun -m sae.cli_cache)
    from sae.distributed import rank_main

    raise SystemExit(rank_main("python -m sae.cli_cache", add_arguments, run))
