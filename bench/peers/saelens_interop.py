"""Peer side of the interop benchmark: SAELens 6.54.12 reads saelab's saved SAEs and saves its own.

Runs in bench/.peers. Payload (JSON on stdin): ``x`` (a safetensors file with the input rows
``x``), ``ours`` (case → a directory saelab saved), ``theirs`` (case → {architecture, kwargs,
directory, seed}: SAELens builds that SAE with random weights and saves it there). For every
SAE it reports ``codes`` = ``sae.encode(x)`` and ``out`` = ``sae(x)`` (decode, plus the
skip path of skip transcoders); prints one JSON line.
"""

import json
import sys

import torch
from sae_lens import SAE
from sae_lens.registry import get_sae_class
from safetensors.torch import load_file


def run(sae, x):
    with torch.no_grad():
        return {"codes": sae.encode(x).tolist(), "out": sae(x).tolist(), "class": type(sae).__name__}


def build(spec):
    cls, cfg_cls = get_sae_class(spec["architecture"])
    cfg = cfg_cls(**spec["kwargs"])
    cfg.metadata.hook_name = "blocks.0.hook_resid_pre"
    cfg.metadata.model_name = "organism"
    sae = cls(cfg)
    g = torch.Generator().manual_seed(spec["seed"])
    with torch.no_grad():
        for name, p in sae.named_parameters():
            if name == "threshold":
                p.copy_(torch.rand(p.shape, generator=g) * 0.3)
            elif name == "log_threshold":
                p.copy_(torch.log(torch.rand(p.shape, generator=g) * 0.3 + 1e-3))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return sae


def main():
    payload = json.loads(sys.stdin.read())
    x = load_file(payload["x"])["x"]
    out = {"ours": {}, "theirs": {}}
    for case, path in payload["ours"].items():
        out["ours"][case] = run(SAE.load_from_disk(path), x)
    for case, spec in payload["theirs"].items():
        sae = build(spec)
        sae.save_model(spec["directory"])
        out["theirs"][case] = run(sae, x)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
