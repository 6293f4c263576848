"""Headless Chromium for slow-tier tests that render HTML (the report, the explorer).

``chromium()`` finds the browser, installing Debian's ``chromium`` with apt when it is
missing and the tests run as root (test machines do); otherwise the test is skipped with
the reason. ``render(html_path, out_dir)`` loads a page with scripts enabled and returns
the DOM after they ran plus a PNG screenshot.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--mute-audio",
)
NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _find() -> str | None:
    for name in NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def chromium() -> str:
    """Path of a Chromium binary; installs Debian's package when missing (root only)."""
    found = _find()
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium is not installed and apt-get is unavailable (or not root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"],
    ):
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        if result.returncode != 0:
            pytest.skip(f"could not install chromium: {' '.join(cmd)}: {result.stderr.strip()[-200:]}")
    found = _find()
    if not found:
        pytest.skip("chromium installed but not found on PATH")
    return found


def _run(args: list[str], timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run([chromium(), *FLAGS, *args], capture_output=True, text=True, timeout=timeout)


def render(
    html_path: str | Path,
    out_dir: str | Path,
    width: int = 1280,
    height: int = 4000,
    budget_ms: int = 20000,
    timeout: int = 180,
) -> tuple[str, Path]:
    """``(dom_after_scripts, screenshot_png)`` of a local HTML file."""
    url = Path(html_path).resolve().as_uri()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shot = out / "screenshot.png"
    profile = out / "profile"
    common = [
        f"--user-data-dir={profile}",
        f"--virtual-time-budget={budget_ms}",
        "--run-all-compositor-stages-before-draw",
    ]
    dom = _run([*common, "--dump-dom", url], timeout)
    if dom.returncode != 0:
        raise RuntimeError(f"chromium --dump-dom failed: {dom.stderr.strip()[-300:]}")
    pic = _run([*common, f"--window-size={width},{height}", f"--screenshot={shot}", url], timeout)
    if pic.returncode != 0 or not shot.is_file():
        raise RuntimeError(f"chromium --screenshot failed: {pic.stderr.strip()[-300:]}")
    return dom.stdout, shot


def png_pixels(path: str | Path):
    """``[H, W, 3]`` uint8 pixels of a screenshot (Pillow ships with streamlit)."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))
