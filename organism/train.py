"""Train the model organism: a small GPT-2 on the generated corpus, deterministic from a seed.

Every row of a batch is one fresh document: BOS followed by its first ``seq_len - 1``
tokens, so sentence starts (where IOI and greater-than prompts begin) are common and
aligned with how the task prompts are presented at evaluation.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from pydantic import Field
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from organism import corpus
from organism.corpus import CorpusConfig
from organism.tokenizer import build_tokenizer
from sae.atomic import atomic_directory, write_json
from sae.config import FrozenConfig
from sae.progress import progress_bar


class OrganismConfig(FrozenConfig):
    """Architecture, data and optimisation of the organism."""

    seed: int = Field(0, description="Seeds the corpus stream, the initialisation and nothing else.")
    n_layers: int = Field(4, ge=1, description="Transformer blocks.")
    n_heads: int = Field(8, ge=1, description="Attention heads per block.")
    d_model: int = Field(128, ge=8, description="Residual stream width.")
    n_ctx: int = Field(128, ge=8, description="Positional embeddings (maximum context).")
    seq_len: int = Field(64, ge=8, description="Training context length, BOS included.")
    batch_size: int = Field(64, ge=1, description="Sequences per optimiser step.")
    steps: int = Field(4000, ge=1, description="Optimiser steps.")
    lr: float = Field(2e-3, gt=0, description="Peak AdamW learning rate.")
    warmup_steps: int = Field(200, ge=0, description="Linear warm-up, then cosine decay to lr/10.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay on matrices.")
    grad_clip: float = Field(1.0, gt=0, description="Global gradient-norm clip.")
    dropout: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="Dropout on embeddings, residual writes and attention weights, as GPT-2 was trained. "
        "It spreads each task over several heads (backup heads) instead of one.",
    )
    corpus: CorpusConfig = Field(default_factory=CorpusConfig, description="Sentence-family mix.")


def build_model(cfg: OrganismConfig, vocab_size: int, bos_id: int, pad_id: int) -> GPT2LMHeadModel:
    if cfg.d_model % cfg.n_heads:
        raise ValueError("d_model must be divisible by n_heads")
    hf_cfg = GPT2Config(
        vocab_size=vocab_size,
        n_positions=cfg.n_ctx,
        n_embd=cfg.d_model,
        n_layer=cfg.n_layers,
        n_head=cfg.n_heads,
        resid_pdrop=cfg.dropout,
        embd_pdrop=cfg.dropout,
        attn_pdrop=cfg.dropout,
        bos_token_id=bos_id,
        eos_token_id=bos_id,
        pad_token_id=pad_id,
    )
    torch.manual_seed(cfg.seed)
    return GPT2LMHeadModel(hf_cfg)


def token_batches(cfg: OrganismConfig, tokenizer: PreTrainedTokenizerFast, seed: int) -> Iterator[torch.Tensor]:
    """Endless ``[batch, seq_len]`` batches, each row BOS + the start of one document."""
    docs = corpus.documents(seed, cfg.corpus)
    bos, pad = tokenizer.bos_token_id, tokenizer.pad_token_id
    while True:
        texts = list(itertools.islice(docs, cfg.batch_size))
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
        rows = []
        for r in ids:
            row = [bos, *r[: cfg.seq_len - 1]]
            rows.append(row + [pad] * (cfg.seq_len - len(row)))
        yield torch.tensor(rows, dtype=torch.long)


def _lr_at(step: int, cfg: OrganismConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(cfg: OrganismConfig, out_dir: str | Path, progress: bool = True) -> dict:
    """Trains the organism and writes it to ``out_dir`` (replaced atomically)."""
    torch.use_deterministic_algorithms(True)
    tokenizer = build_tokenizer()
    model = build_model(cfg, len(tokenizer), tokenizer.bos_token_id, tokenizer.pad_token_id)
    model.train()
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.95),
    )
    batches = token_batches(cfg, tokenizer, cfg.seed)
    pad = tokenizer.pad_token_id
    losses: list[float] = []
    start = time.time()
    bar = progress_bar(range(cfg.steps), desc="organism", disable=not progress, unit="step")
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, cfg)
        tokens = next(batches)
        labels = tokens.masked_fill(tokens == pad, -100)
        loss = model(input_ids=tokens, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        losses.append(loss.item())
        if step % 50 == 0:
            bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.3f}")
    model.eval()
    meta = {
        "config": cfg.model_dump(),
        "train_tokens": cfg.steps * cfg.batch_size * cfg.seq_len,
        "final_loss": sum(losses[-100:]) / len(losses[-100:]),
        "train_seconds": round(time.time() - start, 1),
        "torch_version": torch.__version__,
    }
    save(model, tokenizer, out_dir, meta)
    return meta


def save(model: GPT2LMHeadModel, tokenizer: PreTrainedTokenizerFast, out_dir: str | Path, meta: dict) -> None:
    """``config.json``, ``model.safetensors`` (untied copy dropped), tokenizer files, meta."""
    with atomic_directory(out_dir) as tmp:
        model.config.to_json_file(str(tmp / "config.json"))
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        tokenizer.save_pretrained(str(tmp))
        write_json(tmp / "training.json", meta)
        (tmp / "README.md").write_text(
            "# saelab model organism\n\nA GPT-2-architecture model trained by `saelab organism train` "
            "on the corpus generated by `organism/corpus.py`.\n\n```json\n" + json.dumps(meta, indent=2) + "\n```\n"
        )
