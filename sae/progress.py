"""Progress bars that report throughput in tokens per second."""

from __future__ import annotations

from tqdm.auto import tqdm


def token_bar(total_tokens: int, desc: str, enabled: bool = True, initial: int = 0) -> tqdm:
    return tqdm(
        total=total_tokens,
        initial=initial,
        desc=desc,
        unit="tok",
        unit_scale=True,
        disable=not enabled,
        dynamic_ncols=True,
        leave=False,
    )
