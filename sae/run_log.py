"""A training run's metrics: ``metrics.jsonl`` in the run directory, and wandb when asked for.

One line per logged step, ``{"step", "rows", "seconds", "saes": {name: metrics}}``, appended
as training goes. A resumed run first cuts the file back to its checkpoint's step (and
drops a line a crash tore), then logs the later steps again, so the file always reads as
one uninterrupted run. Only the writing rank logs; wandb never costs a run: if it is
missing or fails to start, the run goes on without it.
"""

from __future__ import annotations

import json
import netrc
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlparse

from sae.atomic import write_text

#: metrics too bulky for wandb's scalar charts; they stay in metrics.jsonl
NOT_SCALAR = ("density_hist",)


def wandb_login_stored(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``wandb login`` left an API key in the netrc file (``$NETRC`` or ``~/.netrc``)
    for the wandb host (``$WANDB_BASE_URL``, default api.wandb.ai)."""
    env = os.environ if environ is None else environ
    host = urlparse(env.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname or "api.wandb.ai"
    home = env.get("HOME") or str(Path.home())
    path = Path(env.get("NETRC") or Path(home) / ".netrc")
    if not path.is_file():
        return False
    try:
        entry = netrc.netrc(str(path)).authenticators(host)
    except (netrc.NetrcParseError, OSError, UnicodeDecodeError):
        return False
    return bool(entry and entry[2])


def wandb_mode(configured: str = "auto", environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """``(mode, why)``: whether wandb logs online, and what decided it.

    The user's explicit choice wins: ``WANDB_MODE`` in the environment (any mode wandb
    knows), then the trainer config's ``wandb_mode`` when it is not ``auto``. Otherwise wandb
    goes online when the user has credentials (``WANDB_API_KEY``, or a key ``wandb login``
    stored in ~/.netrc) and stays offline when they have none, so a run never blocks on a
    login prompt or fails for want of one.
    """
    env = os.environ if environ is None else environ
    if env.get("WANDB_MODE"):
        return env["WANDB_MODE"], "WANDB_MODE"
    if configured != "auto":
        return configured, "trainer.wandb_mode"
    if env.get("WANDB_API_KEY"):
        return "online", "WANDB_API_KEY"
    if wandb_login_stored(env):
        return "online", "a stored wandb login (netrc)"
    return "offline", "no wandb credentials"


class RunLog:
    def __init__(
        self,
        run_dir: Path,
        enabled: bool,
        wandb_project: str | None,
        config: Callable[[], dict],
        wandb_mode: str = "auto",
    ):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.wandb_project = wandb_project
        self.wandb_mode = wandb_mode
        self.config = config  # called once, when wandb starts
        self._wandb = None  # None: not started yet; False: unavailable

    def reset(self) -> None:
        """Start an empty log (a run from scratch)."""
        if self.enabled:
            write_text(self.path, "")

    def truncate(self, step: int) -> None:
        """Keep the lines logged up to ``step`` (a resumed run logs the later ones again);
        a line cut short by a crash is dropped."""
        if not self.enabled or not self.path.exists():
            return
        keep = []
        for line in self.path.read_text().splitlines():
            try:
                if json.loads(line)["step"] <= step:
                    keep.append(line)
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
        write_text(self.path, "".join(line + "\n" for line in keep))

    def write(self, step: int, rows: int, elapsed: float, saes: dict[str, dict]) -> None:
        """Log every SAE's metrics at ``step`` (after ``rows`` rows, ``elapsed`` seconds in)."""
        if not self.enabled:
            return
        record = {"step": step, "rows": rows, "seconds": round(elapsed, 2), "saes": saes}
        with open(self.path, "a") as f:  # an append-only log; truncate repairs a torn line
            f.write(json.dumps(record) + "\n")
        run = self._wandb_run()
        if run is not None:
            scalars = {f"{name}/{k}": v for name, m in saes.items() for k, v in m.items() if k not in NOT_SCALAR}
            run.log(scalars, step=step)

    def close(self) -> None:
        if self._wandb:
            self._wandb.finish()
        self._wandb = None

    def _wandb_run(self):
        """wandb, imported lazily, in the mode ``wandb_mode`` decides (online when the user is
        logged in or asked for it, offline otherwise)."""
        if self.wandb_project is None:
            return None
        if self._wandb is None:
            try:
                import wandb
            except ImportError:
                self._wandb = False
                return None
            mode, _why = wandb_mode(self.wandb_mode)
            os.environ.setdefault("WANDB_SILENT", "true")
            try:
                self._wandb = wandb.init(
                    project=self.wandb_project,
                    mode=mode,
                    dir=str(self.run_dir),
                    name=self.run_dir.name,
                    config=self.config(),
                    reinit="finish_previous",
                )
            except Exception as e:  # wandb must never cost a run
                print(f"wandb disabled: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
                self._wandb = False
        return self._wandb or None
