"""Peer side of the harvest benchmark: SAELens 6.54.12 ActivationsStore on the same model and tokens.

Runs in bench/.peers/saelens (transformer-lens 3.9.0). Reads a JSON payload on stdin, prints one
JSON line. The HookedTransformer is built from the organism's config and loaded with its
Hugging Face weights without any processing, so both sides compute the same function.
"""

import json
import sys
import time

import torch
from datasets import load_from_disk
from sae_lens.training.activations_store import ActivationsStore
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens.pretrained.weight_conversions import convert_gpt2_weights
from transformers import GPT2LMHeadModel


def build_model(model_dir):
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
    model = HookedTransformer(cfg)
    model.load_and_process_state_dict(
        convert_gpt2_weights(hf, cfg),
        fold_ln=False,
        center_writing_weights=False,
        center_unembed=False,
        fold_value_biases=False,
    )
    tokens = torch.randint(3, c.vocab_size, (2, 16))
    with torch.no_grad():
        diff = (model(tokens) - hf(tokens).logits).abs().max().item()
    return model.eval(), diff


def make_store(model, dataset, hooks, d_ins, p, multi):
    common = {
        "dataset": dataset,
        "streaming": False,
        "context_size": p["context_size"],
        "n_batches_in_buffer": p["n_batches_in_buffer"],
        "total_training_tokens": p["n_tokens"],
        "store_batch_size_prompts": p["lm_batch_size"],
        "train_batch_size_tokens": p["batch_size"],
        "prepend_bos": False,
        "normalize_activations": "none",
        "device": "cpu",
        "dtype": "float32",
        "exclude_special_tokens": torch.tensor(p["exclude"]),
    }
    if multi:
        return ActivationsStore.from_config_multi_hook(model, hook_names=hooks, hook_d_ins=d_ins, **common)
    return ActivationsStore(model=model, hook_name=hooks[0], hook_head_index=None, d_in=d_ins[hooks[0]], **common)


def consume(store, rows, multi):
    loader = store.get_multi_hook_data_loader() if multi else iter(store)
    got = 0
    while got < rows:
        batch = next(loader)
        got += (next(iter(batch.values())) if multi else batch).shape[0]
    return got


def main():
    p = json.loads(sys.stdin.read())
    torch.set_num_threads(p["threads"])
    model, diff = build_model(p["model_dir"])
    dataset = load_from_disk(p["dataset_dir"])
    hooks, d_ins = p["hooks"], p["d_ins"]
    rows = p["rows"]
    start = time.perf_counter()
    if p["mode"] == "multi":
        consume(make_store(model, dataset, hooks, d_ins, p, multi=True), rows, multi=True)
    else:  # one store per hook, each with its own forward passes
        for h in hooks:
            consume(make_store(model, dataset, [h], {h: d_ins[h]}, p, multi=False), rows, multi=False)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "rows": rows, "max_logit_diff_vs_hf": diff}))


if __name__ == "__main__":
    main()
