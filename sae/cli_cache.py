"""``saelab cache CONFIG``: harvest activations to an on-disk cache (resumable)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("cache", help="harvest activations into an on-disk cache (kill and rerun to resume)")
    parser.add_argument("config", help="YAML store config (see configs/cache_organism.yaml)")
    parser.add_argument("--out", help="cache directory (overrides cache_dir in the config)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import time

    from sae.cache import write_cache
    from sae.config import load_config
    from sae.errors import ConfigError
    from sae.store import StoreConfig, load_for

    cfg = load_config(StoreConfig, args.config, args.set)
    if args.out:
        cfg = cfg.model_copy(update={"cache_dir": args.out})
    if cfg.cache_dir is None:
        raise ConfigError(f"{args.config}: key 'cache_dir': required for caching (or pass --out)")
    start = time.time()
    # Load the model even when the cache is complete: its weights are checked against the
    # fingerprint in the manifest, so a stale cache is reported instead of reused.
    model, tokenizer = load_for(cfg)
    manifest = write_cache(cfg, model, tokenizer, progress=not args.quiet)
    seconds = time.time() - start
    hooks = ", ".join(f"{h} (d_in {m['d_in']})" for h, m in manifest["hooks"].items())
    print(f"cache {cfg.cache_dir}: {manifest['rows']:,} rows x [{hooks}] in {len(manifest['shards'])} shards "
          f"({seconds:.0f} s)")
    return 0
