"""Task prompt generators and metrics, shared by the organism's corpus and circuit discovery.

``TASKS`` maps a task name to its module, each exposing ``make_batch(tokenizer, n, seed)``,
``metric(logits, batch) -> [n]`` and ``paper_negatives(tokenizer, batch, seed)`` (the batch
with O'Neill & Bui's negatives as its corrupted prompts, for the discrete-SAE finder).
"""

from circuits.tasks import greater_than, ioi
from circuits.tasks.base import TaskBatch

TASKS = {"ioi": ioi, "greater-than": greater_than}

__all__ = ["TASKS", "TaskBatch", "greater_than", "ioi"]
