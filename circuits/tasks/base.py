"""What every task batch carries: clean and corrupted tokens, aligned positions, answers.

Prompts of one task are tokenized with a leading BOS, right-padded to a common length,
and their clean and corrupted versions have identical token lengths, so positions line
up between the two runs that activation and path patching compare.

Builders take ``device``: every tensor of the batch is made there (the model's device,
``sae.model.model_device``; None is torch's default device), so a batch never needs a
copy before it meets the model's activations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class TaskBatch:
    """A batch of task prompts, ready for a forward pass.

    ``positions`` maps a role (``"IO"``, ``"S1"``, ``"S2"``, ``"END"`` for IOI; ``"YY"``,
    ``"END"`` for greater-than) to one token index per prompt. ``END`` is the position
    whose next-token prediction the metric reads.
    """

    task: str
    prompts: list[str]
    corrupt_prompts: list[str]
    tokens: torch.Tensor  # [n, seq] long, right-padded
    corrupt_tokens: torch.Tensor  # [n, seq] long
    lengths: torch.Tensor  # [n] long: real tokens, BOS included
    positions: dict[str, torch.Tensor]
    answers: torch.Tensor  # [n] token id of the correct next token
    distractors: torch.Tensor  # [n] token id of the foil (IOI: S) or -1
    template_ids: torch.Tensor  # [n] long
    attributes: list[dict] = field(default_factory=list)
    labels: dict[str, torch.Tensor] = field(default_factory=dict)  # per-prompt numbers
    vocab_ids: dict[str, torch.Tensor] = field(default_factory=dict)  # batch-wide token sets

    def __len__(self) -> int:
        return self.tokens.shape[0]

    @property
    def end(self) -> torch.Tensor:
        return self.positions["END"]

    def subset(self, index: torch.Tensor | list[int] | slice) -> TaskBatch:
        """The prompts selected by ``index`` as a batch of their own."""
        if isinstance(index, slice):
            index = list(range(len(self)))[index]
        idx = torch.as_tensor(index, dtype=torch.long, device=self.tokens.device)
        pick = idx.tolist()
        return TaskBatch(
            task=self.task,
            prompts=[self.prompts[i] for i in pick],
            corrupt_prompts=[self.corrupt_prompts[i] for i in pick],
            tokens=self.tokens[idx],
            corrupt_tokens=self.corrupt_tokens[idx],
            lengths=self.lengths[idx],
            positions={k: v[idx] for k, v in self.positions.items()},
            answers=self.answers[idx],
            distractors=self.distractors[idx],
            template_ids=self.template_ids[idx],
            attributes=[self.attributes[i] for i in pick] if self.attributes else [],
            labels={k: v[idx] for k, v in self.labels.items()},
            vocab_ids=self.vocab_ids,
        )

    def to(self, device: torch.device | str) -> TaskBatch:
        moved = {k: v.to(device) for k, v in self.positions.items()}
        return TaskBatch(
            task=self.task,
            prompts=self.prompts,
            corrupt_prompts=self.corrupt_prompts,
            tokens=self.tokens.to(device),
            corrupt_tokens=self.corrupt_tokens.to(device),
            lengths=self.lengths.to(device),
            positions=moved,
            answers=self.answers.to(device),
            distractors=self.distractors.to(device),
            template_ids=self.template_ids.to(device),
            attributes=self.attributes,
            labels={k: v.to(device) for k, v in self.labels.items()},
            vocab_ids={k: v.to(device) for k, v in self.vocab_ids.items()},
        )


def end_logits(logits: torch.Tensor, batch: TaskBatch) -> torch.Tensor:
    """Logits at each prompt's END position: [n, vocab]."""
    rows = torch.arange(logits.shape[0], device=logits.device)
    return logits[rows, batch.end.to(logits.device)]


def single_token_id(tokenizer, text: str) -> int | None:
    """The id of ``text`` if the tokenizer maps it to exactly one known token, else None."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1 or ids[0] == tokenizer.unk_token_id:
        return None
    return ids[0]


def encode_with_bos(tokenizer, texts: list[str]) -> tuple[list[list[int]], list[list[tuple[int, int]]]]:
    """Token ids (BOS first) and character offsets of each text."""
    enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    bos = tokenizer.bos_token_id
    ids = [[bos, *list(x)] for x in enc["input_ids"]]
    offsets = [[(-1, -1)] + [tuple(o) for o in x] for x in enc["offset_mapping"]]
    return ids, offsets


def token_index_at(offsets: list[tuple[int, int]], char_start: int) -> int:
    """Index of the token covering character ``char_start`` (leading spaces included)."""
    for i, (a, b) in enumerate(offsets):
        if a <= char_start < b:
            return i
    raise ValueError(f"no token covers character {char_start}")


def pad_right(rows: list[list[int]], pad_id: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``[len(rows), longest]`` long tensor on ``device``, each row right-padded with ``pad_id``."""
    width = max(len(r) for r in rows)
    return torch.tensor([[*r, *[pad_id] * (width - len(r))] for r in rows], dtype=torch.long, device=device)


def pad_id_of(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
