"""The ``runs`` list of a results file that partial runs merge into (``merge_saved``)."""

from __future__ import annotations


def runs_after(previous: dict, document: dict, kept: list, made: list) -> list[dict]:
    """``previous``'s runs (or one standing for the whole previous file, holding the ``kept``
    rows) and then this run: the rows it ``made``, when, with what arguments, at what load."""
    first = {"rows": kept, "created": previous.get("created"), "args": previous.get("args")}
    runs = list(previous.get("runs") or [first])
    runs.append(
        {
            "rows": made,
            "created": document["created"],
            "args": document["args"],
            "load_average": document["machine"].get("load_average"),
        }
    )
    return runs
