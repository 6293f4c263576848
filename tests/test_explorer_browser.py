"""End to end: `saelab explore` on a free port, a feature dashboard in headless Chromium (slow tier)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

import pytest

from browser import FLAGS, chromium

pytestmark = pytest.mark.slow
ARTEFACTS = Path(__file__).resolve().parents[1] / ".artifacts"  # git-ignored; the screenshot stays for a person


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.xfail(strict=True, reason="chromium --dump-dom/--screenshot fire at the load event, before "
                   "Streamlit's websocket has rendered the page (DOM stays 'CONNECTING'); needs a DevTools wait")
@pytest.mark.timeout(600)
def test_explore_serves_a_feature_dashboard(tmp_path_factory, organism):
    import torch

    from app.dashboard_config import DashboardConfig
    from app.dashboard_data import build_run, read_features
    from sae.architectures import sae_class
    from sae.saving import save_sae

    browser = chromium()
    root = tmp_path_factory.mktemp("explore_e2e")
    cls = sae_class("topk")
    torch.manual_seed(2)
    save_sae(cls(cls.config_class(d_in=128, d_sae=64, k=4)), root / "resid",
             metadata={"hook": "blocks.1.hook_resid_post", "model": "organism", "name": "resid"})
    build_run(root, DashboardConfig(n_tokens=2048, context_size=32, lm_batch_size=16), progress=False,
              model=organism[0], tokenizer=organism[1])
    feats = read_features(root / "resid")
    feature = int(feats["count"].idxmax())
    token = str(feats.top_token[feature]).strip()
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "saelab", "explore", str(root), "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)
                break
            except OSError:
                time.sleep(1)
        else:
            pytest.fail("saelab explore did not come up in 120 s")
        url = f"http://127.0.0.1:{port}/Feature_dashboard?" + urlencode({"sae": "resid", "feature": feature})
        out = ARTEFACTS / "explorer"
        out.mkdir(parents=True, exist_ok=True)
        common = [f"--user-data-dir={out / 'profile'}", "--timeout=25000",
                  "--run-all-compositor-stages-before-draw"]
        dom = subprocess.run([browser, *FLAGS, *common, "--dump-dom", url], capture_output=True, text=True, timeout=180)
        shot = out / "feature_dashboard.png"
        subprocess.run([browser, *FLAGS, *common, "--window-size=1400,2400", f"--screenshot={shot}", url],
                       capture_output=True, text=True, timeout=180)
        assert "Feature dashboard" in dom.stdout, dom.stdout[-2000:]
        assert token.replace(" ", "\xa0") in dom.stdout.replace("&nbsp;", "\xa0") or token in dom.stdout
        assert shot.is_file() and shot.stat().st_size > 10_000
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
