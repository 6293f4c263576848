"""interop: SAEs cross between saelab and SAELens 6.54.12 with the same encode and decode.

For every architecture SAELens saves for inference (standard, topk, jumprelu, gated,
transcoder, skip_transcoder, jumprelu_transcoder; BatchTopK and Matryoshka save as jumprelu)
plus the run-time normalisations and TopK's decoder-norm rescaling, both directions on one
input (``x``, 64 rows, d_in 16, d_sae 48):

- saelab → SAELens: an SAE of the registered family that loads that architecture, with
  random weights, saved by ``save_sae``, read by ``SAE.load_from_disk`` in the peer venv;
- SAELens → saelab: SAELens builds the same architecture with random weights and saves it
  (``save_model``); ``sae.loading.load_sae`` reads it.

Per direction, max |Δ| of the codes (``encode``) and of the output (``reconstruct`` against
SAELens' ``sae(x)``). Pass: every Δ ≤ 1e-5. An architecture no registered family loads yet
is a row marked skipped, with the reason.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

TOLERANCE = 1e-5
D_IN, D_SAE, D_OUT, K, ROWS = 16, 48, 12, 5, 64
#: (case, SAELens architecture, extra cfg fields, run-time normalisation)
CASES = (
    ("standard", "standard", {}, "none"),
    ("standard+layer_norm", "standard", {}, "layer_norm"),
    ("standard+constant_norm_rescale", "standard", {}, "constant_norm_rescale"),
    ("topk", "topk", {"k": K}, "none"),
    ("topk+rescale_acts_by_decoder_norm", "topk", {"k": K, "rescale_acts_by_decoder_norm": True}, "none"),
    ("jumprelu", "jumprelu", {}, "none"),
    ("gated", "gated", {}, "none"),
    ("transcoder", "transcoder", {"d_out": D_OUT, "apply_b_dec_to_input": False}, "none"),
    ("skip_transcoder", "skip_transcoder", {"d_out": D_OUT, "apply_b_dec_to_input": False}, "none"),
    ("jumprelu_transcoder", "jumprelu_transcoder", {"d_out": D_OUT, "apply_b_dec_to_input": False}, "none"),
    # trained families whose saved form is another architecture: saelab → SAELens checks the save
    ("jumprelu_ste", "jumprelu", {}, "none"),
    ("mutual_choice", "jumprelu", {"k": K}, "none"),
    ("matryoshka_batchtopk", "jumprelu", {"k": K, "prefixes": [12, 24, D_SAE]}, "none"),
)
#: cases whose saelab side is a trained family (the case name) that saves as ``arch``: only the
#: saelab → SAELens direction is new there (SAELens → saelab is the ``arch`` case itself)
TRAINED = {"jumprelu_ste", "mutual_choice", "matryoshka_batchtopk"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="seed of the input rows and the random weights")


def _native(arch: str, fields: dict, norm: str, seed: int, family: str | None = None):
    """A saelab SAE of ``family`` (default: the family that loads ``arch``), random weights;
    None when the family's config needs fields this benchmark does not know."""
    from pydantic import ValidationError

    from sae.architectures import family as family_entry
    from sae.architectures.registry import from_saelens
    from sae.errors import SaelabError

    entry = family_entry(family) if family is not None else from_saelens(arch)
    cls = entry.sae_class
    own = set(cls.config_class.model_fields)
    kw = {k: v for k, v in fields.items() if k in own and k != "rescale_acts_by_decoder_norm"}
    try:
        sae = cls(cls.config_class(d_in=D_IN, d_sae=D_SAE, **kw)).eval()
    except (ValidationError, SaelabError, TypeError, ValueError):
        return None
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in [*sae.named_parameters(), *sae.named_buffers()]:
            if not t.is_floating_point():
                continue
            if "threshold" in name:
                t.copy_(torch.rand(t.shape, generator=g) * 0.3)
            else:
                t.copy_(torch.randn(t.shape, generator=g) * 0.3)
    sae.input_normalization = norm
    return sae


def _delta(a, b) -> float:
    return float((torch.as_tensor(a, dtype=torch.float32) - torch.as_tensor(b, dtype=torch.float32)).abs().max())


def run(args: argparse.Namespace) -> list[dict]:
    from safetensors.torch import save_file

    from bench.peers import run_peer
    from sae.architectures.registry import from_saelens
    from sae.loading import load_sae
    from sae.saving import save_sae

    seed = getattr(args, "seed", 0)
    x = torch.randn(ROWS, D_IN, generator=torch.Generator().manual_seed(seed))
    rows, ours, theirs, natives = [], {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        save_file({"x": x}, str(root / "x.safetensors"))
        for i, (case, arch, fields, norm) in enumerate(CASES):
            entry = from_saelens(arch)
            if entry is None:
                rows.append(
                    {
                        "case": case,
                        "architecture": arch,
                        "status": "skipped",
                        "reason": f"no registered saelab family loads SAELens {arch!r} yet",
                    }
                )
                continue
            kwargs = {"d_in": D_IN, "d_sae": D_SAE, "normalize_activations": norm, **fields}
            if case not in TRAINED:
                theirs[case] = {
                    "architecture": arch,
                    "kwargs": kwargs,
                    "directory": str(root / "theirs" / case),
                    "seed": seed + 100 + i,
                }
            trained = case if case in TRAINED else None
            sae = _native(arch, fields, norm, seed + i, trained)
            if sae is not None:
                natives[case] = sae
                save_sae(sae, root / "ours" / case, metadata={"hook": "blocks.0.hook_resid_pre", "model": "organism"})
                ours[case] = str(root / "ours" / case)
            rows.append({"case": case, "architecture": arch, "family": trained or entry.name, "status": "ok"})
        peer = run_peer("saelens_interop.py", {"x": str(root / "x.safetensors"), "ours": ours, "theirs": theirs})
        for row in rows:
            case = row["case"]
            if row["status"] != "ok":
                continue
            if case in theirs:
                loaded = load_sae(root / "theirs" / case)
                with torch.no_grad():
                    codes, out = loaded.encode(x), loaded.reconstruct(x)[1]
                got = peer["theirs"][case]
                row["saelens_to_saelab_encode"] = _delta(codes, got["codes"])
                row["saelens_to_saelab_decode"] = _delta(out, got["out"])
            if case in natives:
                sae = natives[case]
                with torch.no_grad():
                    codes, out = sae.encode(x), sae.reconstruct(x)[1]
                got = peer["ours"][case]
                row["saelens_class"] = got["class"]
                row["saelab_to_saelens_encode"] = _delta(codes, got["codes"])
                row["saelab_to_saelens_decode"] = _delta(out, got["out"])
            else:
                row["saelab_to_saelens_encode"] = row["saelab_to_saelens_decode"] = None
                row["note"] = "the family's config needs fields this benchmark does not set: saelab → SAELens not run"
            deltas = [v for k, v in row.items() if k.endswith(("_encode", "_decode")) and v is not None]
            row["max_abs_delta"] = max(deltas)
            row["pass"] = row["max_abs_delta"] <= TOLERANCE
    return rows
