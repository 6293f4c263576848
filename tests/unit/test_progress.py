"""Progress bars redraw in place on a terminal and write timed whole lines anywhere else."""

from __future__ import annotations

import io
import time

import sae.progress
from sae.progress import interactive, progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_one_line_per_interval_not_a_redraw_per_update():
    log = io.StringIO()
    with progress_bar(total=100_000, desc="log", file=log, leave=True) as bar:
        for _ in range(100_000):  # far less than LOG_INTERVAL_S
            bar.update(1)
    lines = log.getvalue().splitlines(keepends=True)
    assert "\r" not in log.getvalue() and "\x1b" not in log.getvalue()
    assert all(line.endswith("\n") for line in lines)
    assert len(lines) == 2, lines  # the first draw and the final state, nothing in between
    assert lines[0].startswith("log:   0%") and lines[1].startswith("log: 100%")


def test_a_log_line_comes_every_interval(monkeypatch):
    monkeypatch.setattr(sae.progress, "LOG_INTERVAL_S", 0.05)
    log = io.StringIO()
    bar = progress_bar(total=4, desc="slow", file=log, leave=False)
    for _ in range(4):
        time.sleep(0.08)
        bar.update(1)
    bar.close()
    lines = log.getvalue().splitlines()
    assert [line.split("|")[0].strip() for line in lines] == [
        "slow:   0%",
        "slow:  25%",
        "slow:  50%",
        "slow:  75%",
        "slow: 100%",
    ]


def test_a_terminal_keeps_the_in_place_redraw():
    tty = Terminal()
    assert interactive(tty) and not interactive(io.StringIO())
    bar = progress_bar(total=3, desc="tty", file=tty, mininterval=0)
    for _ in range(3):
        bar.update(1)
    bar.close()
    assert bar.mininterval == 0 and "\r" in tty.getvalue()


def test_a_disabled_bar_writes_nothing():
    log = io.StringIO()
    for _ in progress_bar(range(10), file=log, disable=True):
        pass
    assert log.getvalue() == ""
