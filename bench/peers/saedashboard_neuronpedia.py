"""Peer side of the Neuronpedia export check: sae-dashboard 0.8.0's own ``NeuronpediaRunner``.

Runs in bench/.peers/sae_dashboard (sae-lens 6.54.12, transformer-lens 2.17.0). Payload (JSON on
stdin): ``saes`` (a list of ``{sae_dir, sae_set}``: saelab SAEs saved in SAELens' layout),
``model_dir`` (the organism's Hugging Face folder), ``tokens`` (a safetensors file whose ``tokens``
[n_prompts, n_tokens] are the rows saelab's dashboard build read, BOS first), ``outputs_dir``,
``dataset`` and the
runner's knobs (``n_features_at_a_time``, ``n_quantiles``, ``top_acts_group_size``,
``quantile_group_size``). Prints one JSON line: per SAE set, the folder the runner wrote and its
file names, or the error the runner raised (SAELens refuses ``fold_W_dec_norm`` on a TopK SAE).

The runner is used as it is, except for what needs the network: the model is not
``HookedSAETransformer.from_pretrained(model_id)`` (the organism is no TransformerLens
pretrained name) but the same class built from the organism's config and loaded with its
Hugging Face weights unprocessed (as ``saelens_harvest.py``), and there is no hub dataset: the
token rows are put where ``get_tokens`` looks for its cached ``tokens_{n_prompts_total}.pt``,
so both sides read the same tokens. Everything else (loading the SAE with ``load_from_pretrained``,
``fold_W_dec_norm``, batching, ``SaeVisRunner``, ``NeuronpediaConverter``, the files) is theirs.
"""

import contextlib
import json
import sys
from importlib.metadata import version
from pathlib import Path

import torch
from sae_dashboard.neuronpedia.neuronpedia_runner import NeuronpediaRunner
from sae_dashboard.neuronpedia.neuronpedia_runner_config import NeuronpediaRunnerConfig
from sae_lens import HookedSAETransformer
from safetensors.torch import load_file
from transformer_lens import HookedTransformerConfig
from transformer_lens.pretrained.weight_conversions import convert_gpt2_weights
from transformers import AutoTokenizer, GPT2LMHeadModel, PreTrainedTokenizerFast


def load_tokenizer(model_dir: str, scratch: Path):
    """The organism's tokenizer. Its config names transformers 5's ``TokenizersBackend``, which
    transformers 4.56 lacks, so the same ``tokenizer.json`` and special tokens are saved again as
    a ``PreTrainedTokenizerFast`` folder and loaded from there (TransformerLens reloads a
    tokenizer by its ``name_or_path``)."""
    special = json.loads((Path(model_dir) / "tokenizer_config.json").read_text())
    keys = ("bos_token", "eos_token", "pad_token", "unk_token")
    fast = PreTrainedTokenizerFast(
        tokenizer_file=str(Path(model_dir) / "tokenizer.json"), **{k: special[k] for k in keys if special.get(k)}
    )
    fast.save_pretrained(str(scratch))
    return AutoTokenizer.from_pretrained(str(scratch))


def build_model(model_dir: str, scratch: Path) -> HookedSAETransformer:
    hf = GPT2LMHeadModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    c = hf.config
    cfg = HookedTransformerConfig(
        n_layers=c.n_layer,
        d_model=c.n_embd,
        n_heads=c.n_head,
        d_head=c.n_embd // c.n_head,
        d_mlp=4 * c.n_embd,
        n_ctx=c.n_positions,
        d_vocab=c.vocab_size,
        act_fn="gelu_new",
        normalization_type="LN",
        positional_embedding_type="standard",
        default_prepend_bos=False,
        device="cpu",
    )
    model = HookedSAETransformer(cfg, tokenizer=load_tokenizer(model_dir, scratch))
    model.load_and_process_state_dict(
        convert_gpt2_weights(hf, cfg),
        fold_ln=False,
        center_writing_weights=False,
        center_unembed=False,
        fold_value_biases=False,
    )
    return model.eval()


class OrganismRunner(NeuronpediaRunner):
    """``NeuronpediaRunner`` with the organism for a model and no hub dataset."""

    model_dir: str

    def _initialize_model(self):
        self.model = build_model(self.model_dir, Path(self.cfg.outputs_dir) / "tokenizer")
        self.hook_name = self.sae.cfg.metadata.hook_name

    def _setup_activation_store(self):
        self.activations_store = None  # tokens come from the cached tokens file
        self.cached_activations_dir = Path(self.cfg.outputs_dir) / f"cached_activations_{self.cfg.sae_set}"


def run_one(p: dict, sae: dict, tokens: torch.Tensor) -> dict:
    cfg = NeuronpediaRunnerConfig(
        sae_set=sae["sae_set"],
        sae_path=sae["sae_dir"],
        outputs_dir=p["outputs_dir"],
        from_local_sae=True,
        huggingface_dataset_path=p["dataset"],
        n_prompts_total=tokens.shape[0],
        n_tokens_in_prompt=tokens.shape[1],
        n_prompts_in_forward_pass=int(p.get("n_prompts_in_forward_pass", 32)),
        n_features_at_a_time=int(p["n_features_at_a_time"]),
        n_quantiles=int(p["n_quantiles"]),
        top_acts_group_size=int(p["top_acts_group_size"]),
        quantile_group_size=int(p["quantile_group_size"]),
        sae_dtype="float32",
        model_dtype="float32",
        shuffle_tokens=False,
    )
    try:
        with contextlib.redirect_stdout(sys.stderr):  # the runner prints; stdout carries the result
            runner = OrganismRunner(cfg)
            torch.save(tokens, Path(runner.cfg.outputs_dir) / f"tokens_{cfg.n_prompts_total}.pt")
            runner.run()
    except Exception as e:  # reported, so one SAE the runner refuses does not hide the others
        return {"error": f"{type(e).__name__}: {e}"}
    out = Path(runner.cfg.outputs_dir)
    return {"outputs_dir": str(out), "files": sorted(f.name for f in out.iterdir() if f.is_file())}


def main():
    p = json.loads(sys.stdin.read())
    torch.set_num_threads(int(p.get("threads", 1)))
    tokens = load_file(p["tokens"])["tokens"].long()
    OrganismRunner.model_dir = p["model_dir"]
    saes = {sae["sae_set"]: run_one(p, sae, tokens) for sae in p["saes"]}
    print(json.dumps({"peer_version": version("sae-dashboard"), "saes": saes}))


if __name__ == "__main__":
    main()
