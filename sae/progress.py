"""Progress bars: every bar in saelab comes from here, so one place decides how bars draw.

On a terminal (or as a notebook widget) a bar redraws in place, as tqdm does. When its stream
is not a terminal (a log file, CI, a pipe), a redraw per update would fill the log with
carriage returns; there a bar writes one whole line at most every ``LOG_INTERVAL_S`` seconds.
"""

from __future__ import annotations

import re
import sys
from typing import IO

from tqdm.auto import tqdm

#: seconds between the lines a bar writes when its stream is not a terminal
LOG_INTERVAL_S = 5.0
_REDRAW = re.compile(r"\r|\n|\x1b\[A")  # tqdm's carriage return, newline and cursor-up


def interactive(stream: IO | None) -> bool:
    """Whether a bar on ``stream`` can redraw in place: a terminal, or a notebook (tqdm's widget)."""
    if any(c.__module__ == "tqdm.notebook" for c in tqdm.__mro__):
        return True
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (ValueError, OSError):  # a closed or detached stream
        return False


class LineWriter:
    """A stream for tqdm that turns its in-place redraws into whole lines (repeats dropped)."""

    def __init__(self, stream: IO):
        self.stream = stream
        self.last: str | None = None

    def write(self, text: str) -> int:
        for piece in _REDRAW.split(text):
            line = piece.rstrip()
            if line and line != self.last:
                self.stream.write(line + "\n")
                self.last = line
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(iterable=None, **kwargs) -> tqdm:
    """``tqdm(iterable, **kwargs)``, drawn in place on a terminal and as timed lines elsewhere."""
    stream = kwargs.get("file") or sys.stderr
    if not interactive(stream) and not kwargs.get("disable"):
        kwargs["file"] = LineWriter(stream)
        kwargs["mininterval"] = max(kwargs.get("mininterval", 0.0), LOG_INTERVAL_S)
        kwargs["dynamic_ncols"] = False
    return tqdm(iterable, **kwargs)


def token_bar(total_tokens: int, desc: str, enabled: bool = True, initial: int = 0) -> tqdm:
    """A bar counting tokens, so it reports throughput in tokens per second."""
    return progress_bar(
        total=total_tokens,
        initial=initial,
        desc=desc,
        unit="tok",
        unit_scale=True,
        disable=not enabled,
        dynamic_ncols=True,
        leave=False,
    )
