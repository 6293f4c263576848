"""Saved SAEs: identical outputs after a round trip, SAELens compatibility both ways, bad files refused."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch

from sae.architectures import family, sae_class, trainable
from sae.errors import SaelabError
from sae.saving import load_sae, save_sae


def trained_like(arch: str, d_in: int = 16, d_sae: int = 48):
    """An SAE with non-trivial buffers (thresholds, densities), as after training."""
    cls = sae_class(arch)
    kw = {"k": 5} if family(arch).has_k else {}
    torch.manual_seed(3)
    sae = cls(cls.config_class(d_in=d_in, d_sae=d_sae, **kw)).train()
    with torch.no_grad():
        for bias in ("b_enc", "b_dec", "b_gate", "b_mag", "r_mag"):  # whichever the family has
            if isinstance(getattr(sae, bias, None), torch.nn.Parameter):
                getattr(sae, bias).normal_(0, 0.1)
    for _ in range(3):
        sae(torch.randn(64, d_in))  # updates EMA thresholds and densities
    return sae.eval()


@pytest.mark.parametrize("arch", trainable())
def test_save_load_gives_identical_outputs(arch, tmp_path):
    sae = trained_like(arch)
    save_sae(sae, tmp_path, metadata={"hook": "blocks.1.hook_resid_post", "model": "organism"})
    loaded, cfg = load_sae(tmp_path)
    assert type(loaded) is type(sae) and cfg["saelab"]["architecture"] == arch
    x = torch.randn(20, 16)
    torch.testing.assert_close(loaded.encode(x), sae.encode(x), atol=0, rtol=0)
    torch.testing.assert_close(loaded.decode(loaded.encode(x)), sae.decode(sae.encode(x)), atol=0, rtol=0)
    assert json.loads((tmp_path / "cfg.json").read_text())["architecture"] == family(arch).saelens_architecture


def test_loading_refuses_bad_directories(tmp_path):
    with pytest.raises(SaelabError, match="no such SAE directory"):
        load_sae(tmp_path / "missing")
    with pytest.raises(SaelabError, match=r"no cfg.json"):
        load_sae(tmp_path)
    save_sae(trained_like("topk"), tmp_path)
    weights = tmp_path / "sae_weights.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(SaelabError, match="not a readable safetensors file"):
        load_sae(tmp_path)
    weights.unlink()
    with pytest.raises(SaelabError, match="no weights"):
        load_sae(tmp_path)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    del cfg["saelab"]
    cfg["architecture"] = "crosscoder_v9"
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    weights.write_bytes(data)
    with pytest.raises(SaelabError, match="architecture 'crosscoder_v9' is not one saelab loads"):
        load_sae(tmp_path)


def test_a_pickle_offered_as_weights_is_refused_without_running_it(tmp_path):
    import pickle

    save_sae(trained_like("topk"), tmp_path)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    (tmp_path / "sae_weights.safetensors").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(SaelabError):
        load_sae(tmp_path)
    assert not marker.exists()


@pytest.fixture(scope="session")
def peer_python():
    """The SAELens 6.54.12 interpreter of ``bench/.peers/saelens``; built here only with SAELAB_BUILD_PEERS=1
    (it downloads torch), otherwise the test skips when it is missing."""
    import os

    from bench.peers import peer_python as build
    from bench.peers import venv
    from sae.errors import SaelabError

    python = venv("saelens") / "bin" / "python"
    if python.exists() and list(venv("saelens").glob("lib/python*/site-packages/sae_lens/__init__.py")):
        return python  # present: skip the slow import probe (the test itself imports sae_lens)
    try:
        return build(build=os.environ.get("SAELAB_BUILD_PEERS") == "1")
    except SaelabError as e:
        pytest.skip(f"the SAELens peer venv is unavailable ({e}); set SAELAB_BUILD_PEERS=1 to build it")


PEER_SCRIPT = r"""
import json, sys, torch
from sae_lens import SAE
out = {}
x = torch.load(sys.argv[1], weights_only=True)
for name, path in json.loads(sys.argv[2]).items():
    sae = SAE.load_from_disk(path)
    out[name] = {"arch": type(sae).__name__, "codes": sae.encode(x).tolist()}
# and SAEs saved by SAELens itself, for the other direction
from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig
from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig
from sae_lens.saes.jumprelu_sae import JumpReLUSAE, JumpReLUSAEConfig
torch.manual_seed(0)
for name, sae in (("topk", TopKSAE(TopKSAEConfig(d_in=16, d_sae=48, k=5))),
                  ("topk_rescaled", TopKSAE(TopKSAEConfig(d_in=16, d_sae=48, k=5, rescale_acts_by_decoder_norm=True))),
                  ("standard", StandardSAE(StandardSAEConfig(d_in=16, d_sae=48, apply_b_dec_to_input=False))),
                  ("jumprelu", JumpReLUSAE(JumpReLUSAEConfig(d_in=16, d_sae=48)))):
    with torch.no_grad():
        for p in sae.parameters():
            p.normal_(0, 0.3)
        if name == "jumprelu":
            sae.threshold.uniform_(0, 0.3)
    sae.save_model(sys.argv[3] + "/" + name)
    out["saelens_" + name] = {"codes": sae.encode(x).tolist(), "recon": sae.decode(sae.encode(x)).tolist()}
print(json.dumps(out))
"""


def test_saelens_reads_our_saes_and_we_read_theirs(tmp_path, peer_python):
    x = torch.randn(20, 16)
    torch.save(x, tmp_path / "x.pt")
    ours = {}
    for arch in ("relu", "topk", "mutual_choice", "feature_choice", "vsae", "gsae"):
        sae = trained_like(arch)
        save_sae(sae, tmp_path / arch)
        ours[arch] = sae
    (tmp_path / "theirs").mkdir()
    result = subprocess.run(
        [
            str(peer_python),
            "-c",
            PEER_SCRIPT,
            str(tmp_path / "x.pt"),
            json.dumps({a: str(tmp_path / a) for a in ours}),
            str(tmp_path / "theirs"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    for arch, sae in ours.items():
        torch.testing.assert_close(torch.tensor(got[arch]["codes"]), sae.encode(x), atol=1e-5, rtol=1e-5)
    assert got["relu"]["arch"] == "StandardSAE" and got["mutual_choice"]["arch"] == "JumpReLUSAE"
    for name in ("topk", "topk_rescaled", "standard", "jumprelu"):
        loaded, _ = load_sae(tmp_path / "theirs" / name)
        theirs = got["saelens_" + name]
        torch.testing.assert_close(loaded.encode(x), torch.tensor(theirs["codes"]), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(loaded.decode(loaded.encode(x)), torch.tensor(theirs["recon"]), atol=1e-5, rtol=1e-5)
