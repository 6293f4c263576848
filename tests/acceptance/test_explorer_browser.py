"""End to end: `saelab explore` on a free port, every page in headless Chromium (slow tier).

Each page is opened, waited for until its text and plots are there, screenshot (kept under
``$SAELAB_ARTIFACTS/explorer`` or ``.artifacts/explorer``; the test prints where), and checked
for no Streamlit exception element and for plotly divs where the page draws plots."""

from __future__ import annotations

import os
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
ARTEFACTS = Path(
    os.environ.get("SAELAB_ARTIFACTS") or Path(__file__).resolve().parents[2] / ".artifacts"
)  # git-ignored by default; the screenshots stay for a person
#: what the page reports once rendered: (exception elements, plotly divs, text)
PROBE = (
    "JSON.stringify({exc: document.querySelectorAll('[data-testid=\"stException\"]').length, "
    "plots: document.querySelectorAll('.js-plotly-plot').length, "
    "text: document.body ? document.body.innerText : ''})"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cdp_pages(browser: str, pages: list[tuple[str, tuple[str, ...], int]], profile: Path, timeout: float = 180.0):
    """Open each ``(url, wanted strings, minimum plotly divs)`` in one headless Chromium and
    wait, through the DevTools protocol, until the page text has every wanted string and
    the page has its plots (Streamlit renders over a websocket after the load event, which
    ``--dump-dom`` does not wait for); yields ``(text, exception_count, plot_count, png)``."""
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
                    msg = json.loads(ws.recv(timeout=120))
                    if msg.get("id") == n:
                        return msg.get("result", {})

            for url, wants, min_plots in pages:
                call("Page.navigate", url=url)
                state = {"text": "", "exc": 0, "plots": 0}
                end = time.time() + timeout
                while time.time() < end:
                    got = call("Runtime.evaluate", expression=PROBE).get("result", {}).get("value")
                    state = json.loads(got) if got else state
                    state["text"] = state["text"].replace("\xa0", " ")
                    if all(w in state["text"] for w in wants) and state["plots"] >= min_plots:
                        break
                    time.sleep(1)
                time.sleep(2)  # let the charts draw before the screenshot
                got = call("Runtime.evaluate", expression=PROBE).get("result", {}).get("value")
                state = json.loads(got) if got else state
                png = base64.b64decode(call("Page.captureScreenshot", format="png")["data"])
                yield state["text"].replace("\xa0", " "), state["exc"], state["plots"], png
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


@pytest.mark.timeout(1200)
def test_explore_serves_every_page(tmp_path_factory, organism):
    import torch

    from app.dashboard_config import DashboardConfig
    from app.dashboard_data import build_run, read_features
    from sae.architectures import sae_class
    from sae.saving import save_sae
    from saelab.cli import main

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
    args = ["circuit", "ioi", "--method", "mean-diff", "--n-prompts", "8", "--json", "--quiet"]
    assert main([*args, "--out", str(root / "circuit_ioi.json")]) == 0  # the Circuits page's plots
    transcoders = tmp_path_factory.mktemp("explore_e2e_transcoders")  # random weights: the Graph page's graph
    for layer in range(organism[0].cfg.n_layers):
        torch.manual_seed(10 + layer)
        tc = cls(cls.config_class(d_in=128, d_sae=64, k=4, d_out=128, apply_b_dec_to_input=False))
        meta = {"hook": f"blocks.{layer}.mlp.hook_in", "hook_out": f"blocks.{layer}.hook_mlp_out", "model": "organism"}
        save_sae(tc, transcoders / f"tc{layer}", metadata=meta)
    prompt = "When Mary and John went to the store, John gave a drink to"
    assert main(["graph", prompt, "--transcoders", str(transcoders), "--out", str(root / "graph.json"), "--quiet"]) == 0
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
    base = f"http://127.0.0.1:{port}"
    q = "?" + urlencode({"sae": "resid"})
    # (name, path, wanted text, minimum plotly divs)
    pages = [
        ("runs", "/", ("Runs", "No sweep_summary.json"), 0),  # tables are canvas: not in the text
        ("feature_browser", "/Feature_browser" + q, ("Feature browser", "of 64 features"), 0),
        (
            "feature_dashboard",
            "/Feature_dashboard?" + urlencode({"sae": "resid", "feature": feature}),
            ("Top activations", token, "Loss effect of ablating", "next-token loss"),
            3,
        ),
        ("prompt_explorer", "/Prompt_explorer" + q, ("Top features at each token", "Steering panel", "Without:"), 1),
        ("circuits", "/Circuits", ("Circuits",), 1),
        ("supervised", "/Supervised", ("No supervised",), 0),
        ("graph", "/Graph", ("Attribution graph", "Replacement score", "Pruning threshold"), 1),
        ("search", "/Search" + q, ("Search features", "By explanation", "Estimated mean activation"), 0),
    ]
    out = ARTEFACTS / "explorer"
    out.mkdir(parents=True, exist_ok=True)
    print(f"explorer screenshots: {out}")
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"{base}/_stcore/health", timeout=2)
                break
            except OSError:
                time.sleep(1)
        else:
            pytest.fail("saelab explore did not come up in 120 s")
        visits = [(base + path, wants, plots) for _, path, wants, plots in pages]
        seen = _cdp_pages(browser, visits, out / "profile")
        for (name, _, wants, min_plots), (text, exc, plots, png) in zip(pages, seen, strict=True):
            shot = out / f"{name}.png"
            shot.write_bytes(png)  # kept for a person to look at
            assert exc == 0, (name, text[-2000:])
            assert "Traceback" not in text, name
            for w in wants:
                assert w in text, (name, w, text[-2000:])
            assert plots >= min_plots, (name, plots)
            assert shot.is_file() and shot.stat().st_size > 10_000, name
    finally:
        _stop(server)
        log.close()
