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
ARTEFACTS = Path(__file__).resolve().parents[2] / ".artifacts"  # git-ignored; the screenshot stays for a person


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cdp_page(
    browser: str, url: str, profile: Path, wants: tuple[str, ...], timeout: float = 120.0
) -> tuple[str, bytes]:
    """Open ``url`` in headless Chromium and wait, through the DevTools protocol, until the page
    text contains every string of ``wants`` (Streamlit renders over a websocket after the load event, which
    ``--dump-dom`` does not wait for); returns ``(page_text, png_screenshot)``."""
    import base64
    import json

    from websockets.sync.client import connect

    port = _free_port()
    proc = subprocess.Popen(
        [
            browser,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--remote-debugging-port={port}",
            "--window-size=1400,2400",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 60
        targets = None
        while time.time() < deadline and not targets:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                    targets = [t for t in json.loads(r.read()) if t.get("type") == "page"]
            except OSError:
                time.sleep(0.5)
        assert targets, "chromium's DevTools endpoint did not come up"
        with connect(targets[0]["webSocketDebuggerUrl"], max_size=None) as ws:
            ids = iter(range(1, 10**6))

            def call(method, **params):
                n = next(ids)
                ws.send(json.dumps({"id": n, "method": method, "params": params}))
                while True:
                    msg = json.loads(ws.recv(timeout=60))
                    if msg.get("id") == n:
                        return msg.get("result", {})

            call("Page.navigate", url=url)
            text = ""
            end = time.time() + timeout
            while time.time() < end:
                text = call("Runtime.evaluate", expression="document.body ? document.body.innerText : ''")
                text = (text.get("result", {}).get("value", "") or "").replace("\xa0", " ")
                if all(w in text for w in wants):
                    break
                time.sleep(1)
            time.sleep(2)  # let the charts draw before the screenshot
            png = base64.b64decode(call("Page.captureScreenshot", format="png")["data"])
            return text, png
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    """Terminate, then kill if it lingers: no browser or server outlives its test."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


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
    save_sae(
        cls(cls.config_class(d_in=128, d_sae=64, k=4)),
        root / "resid",
        metadata={"hook": "blocks.1.hook_resid_post", "model": "organism", "name": "resid"},
    )
    build_run(
        root,
        DashboardConfig(n_tokens=2048, context_size=32, lm_batch_size=16),
        progress=False,
        model=organism[0],
        tokenizer=organism[1],
    )
    feats = read_features(root / "resid")
    feature = int(feats["count"].idxmax())
    token = str(feats.top_token[feature]).strip()
    port = _free_port()
    log = open(root / "explore.log", "w")  # noqa: SIM115 - closed in finally
    server = subprocess.Popen(
        [sys.executable, "-m", "saelab", "explore", str(root), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
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
        text, png = _cdp_page(browser, url, out / "profile", ("Top activations", token))
        shot = out / "feature_dashboard.png"
        shot.write_bytes(png)  # kept for a person to look at
        assert "Feature dashboard" in text and "Top activations" in text, text[-2000:]
        assert token in text, (token, text[-2000:])
        assert shot.is_file() and shot.stat().st_size > 10_000
    finally:
        _stop(server)
        log.close()
