"""Every explorer page through streamlit.testing AppTest on a small run directory (issue 8)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "app"
PAGES = {
    "runs": "Runs.py",
    "browser": "pages/1_Feature_browser.py",
    "feature": "pages/2_Feature_dashboard.py",
    "prompt": "pages/3_Prompt_explorer.py",
    "circuits": "pages/4_Circuits.py",
    "supervised": "pages/5_Supervised.py",
    "graph": "pages/6_Graph.py",
    "search": "pages/7_Search.py",
}


@pytest.fixture(scope="session")
def explorer_dirs(tiny_run, tiny_results, tmp_path_factory, organism):
    """A copy of the eval tests' tiny trained run (topk on the residual stream, topk on
    hook_z, relu on one head) with dashboards built and an IOI circuit result added, and
    the directory of its evaluation results: the explorer reads both."""
    import shutil

    from app.dashboard_config import DashboardConfig
    from app.dashboard_data import build_run
    from saelab.cli import main

    root = tmp_path_factory.mktemp("explorer") / "run"
    shutil.copytree(tiny_run, root)
    build_run(
        root,
        DashboardConfig(n_tokens=2048, context_size=32, lm_batch_size=16),
        progress=False,
        model=organism[0],
        tokenizer=organism[1],
    )
    assert (
        main(
            [
                "circuit",
                "ioi",
                "--method",
                "mean-diff",
                "--n-prompts",
                "8",
                "--json",
                "--quiet",
                "--out",
                str(root / "circuit_ioi.json"),
            ]
        )
        == 0
    )
    from sae.atomic import write_json

    # an autointerp explanation file and a graph naming a feature of "topk" (read generically)
    write_json(
        root / "topk" / "autointerp.json",
        {"kind": "autointerp", "explanations": [{"latent": 3, "explanation": "tokens about a shop", "score": 0.7}]},
    )
    write_json(
        root / "graph_ioi.json",
        {"kind": "graph", "nodes": [{"id": "n1", "hook": "blocks.1.hook_resid_post", "feature": 3, "influence": 0.4}]},
    )
    return root, tiny_results[1]


@pytest.fixture(scope="session")
def explorer_run(explorer_dirs):
    return explorer_dirs[0]


def _run(page: str, run_dir, **query):
    from streamlit.testing.v1 import AppTest

    dirs = run_dir if isinstance(run_dir, (list, tuple)) else [run_dir]
    os.environ["SAELAB_RUN_DIRS"] = os.pathsep.join(str(d) for d in dirs)
    at = AppTest.from_file(str(APP / PAGES[page]), default_timeout=120)
    for k, v in query.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _text(at) -> str:
    return "\n".join([m.value for m in at.markdown] + [m.value for m in at.caption] + [str(m.value) for m in at.metric])


def test_runs_page_shows_saes_and_pareto(explorer_dirs):
    at = _run("runs", explorer_dirs)
    assert sorted(at.dataframe[0].value["SAE"].tolist()) == ["attn", "head5", "topk"]
    specs = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("L0 vs" in s and "topk" in s for s in specs)  # the evaluation Pareto plot


def test_feature_browser_filters(explorer_run):
    from app.dashboard_data import read_features

    at = _run("browser", explorer_run, sae="topk")
    assert "topk · organism" in at.selectbox[0].options  # the label names the model the SAE was trained on
    assert len(at.dataframe[0].value) == 128
    at.text_input[0].input("3, 10-12").run()
    assert sorted(at.dataframe[0].value.feature.tolist()) == [3, 10, 11, 12]
    tok = read_features(explorer_run / "topk").top_token[3]
    at.text_input[0].input("").run()
    at.text_input[1].input(tok).run()
    assert 3 in at.dataframe[0].value.feature.tolist()


def test_feature_dashboard_shows_top_token_and_charts(explorer_run):
    from app.dashboard_data import read_contexts, read_features

    feats = read_features(explorer_run / "attn")
    f = int(feats["count"].idxmax())
    at = _run("feature", explorer_run, sae="attn", feature=str(f))
    top = read_contexts(explorer_run / "attn", f).query("group == 'top'").sort_values("rank").iloc[0]
    page = _text(at)
    assert feats.top_token[f] == top.tokens[top.centre]
    assert str(feats.top_token[f]).replace(" ", "&nbsp;") in page  # highlighted contexts
    assert "Interval (" in "\n".join(h.value for h in at.subheader)
    # histogram, SAEDashboard's activation density, logit histogram and per-head attribution
    assert [c.key for c in at.get("plotly_chart")] == ["hist", "act_density", "logit_hist", "heads"]
    assert feats.pos_tokens[f][0] in at.dataframe[0].value["top token"].tolist()
    heads = [h.value for h in at.subheader]
    assert "Correlated features" in heads and "Neurons (coordinates of the hooked activation)" in heads
    corr = next(d.value for d in at.dataframe if "pearson" in d.value.columns and "feature" in d.value.columns)
    assert corr.feature.tolist() == [int(i) for i in feats.corr_feat_ids[f]]
    assert f"feature={int(feats.corr_feat_ids[f][0])}" in page  # links to the correlated features' pages


def test_prompt_explorer_steers(explorer_run):
    at = _run("prompt", explorer_run, sae="topk")
    assert "token" in at.dataframe[0].value.columns
    changes = at.dataframe[1].value["change"]
    assert changes.abs().max() > 0  # adding 10·W_dec moves the next-token distribution
    assert any(m.value.startswith("**Steered:**") for m in at.markdown)


def test_circuits_and_supervised_pages(explorer_run, tmp_path):
    at = _run("circuits", explorer_run)
    assert len(at.get("plotly_chart")) >= 2  # the layer x head heatmap and the ROC curve, at least
    at = _run("supervised", explorer_run)
    assert "No supervised" in at.info[0].value


def test_missing_run_dir_is_one_message(tmp_path):
    for page in PAGES:
        at = _run(page, tmp_path / "missing")
        assert any("no such run directory" in e.value for e in at.error), page


def test_broken_records_and_results_are_messages(explorer_run, tmp_path):
    import shutil

    from sae.atomic import write_json

    broken = tmp_path / "broken"
    shutil.copytree(explorer_run / "topk", broken / "topk")
    (broken / "topk" / "dashboard" / "features.parquet").write_bytes(b"not parquet")
    write_json(broken / "supervised.json", {"kind": "supervised", "schema_version": 1, "model": "organism"})
    for page in ("browser", "feature"):
        at = _run(page, broken, sae="topk")
        assert any("unreadable" in e.value for e in at.error), page
    at = _run("supervised", broken)
    assert any("could not read the supervised results" in e.value for e in at.error)


def small_graph() -> dict:
    """A hand-made attribution graph in circuit-tracer's JSON (checked against the schema)."""
    import json

    def node(node_id, feature_type, layer, ctx, influence=None, **extra):
        base = {
            "node_id": node_id,
            "feature": 0,
            "layer": layer,
            "ctx_idx": ctx,
            "feature_type": feature_type,
            "token_prob": 0.0,
            "is_target_logit": False,
            "run_idx": 0,
            "reverse_ctx_idx": 0,
            "jsNodeId": node_id,
            "clerp": "",
            "influence": influence,
            "activation": None,
        }
        return {**base, **extra}

    doc = {
        "metadata": {
            "slug": "tiny",
            "scan": "saelab:organism",
            "transcoder_list": ["tc0", "tc1"],
            "prompt_tokens": ["<|endoftext|>", "Mary"],
            "prompt": "Mary",
            "node_threshold": 0.8,
            "schema_version": 1,
        },
        "qParams": {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""},
        "nodes": [
            node("E_0_0", "embedding", "E", 0, 0.95),
            node("E_5_1", "embedding", "E", 1, 0.5),
            node("0_7_1", "cross layer transcoder", "0", 1, 0.3, activation=1.5),
            node("1_9_1", "cross layer transcoder", "1", 1, 0.7, activation=0.5),
            node("0_-1_1", "mlp reconstruction error", "0", 1, 0.9),
            node("3_12_1", "logit", "3", 1, None, is_target_logit=True, token_prob=0.9),
        ],
        "links": [
            {"source": "E_5_1", "target": "0_7_1", "weight": 2.0},
            {"source": "0_7_1", "target": "1_9_1", "weight": -1.0},
            {"source": "1_9_1", "target": "3_12_1", "weight": 3.0},
            {"source": "0_-1_1", "target": "3_12_1", "weight": 0.5},
        ],
        "saelab": {"replacement_score": 0.9, "completeness_score": 0.95, "n_nodes": 40, "n_nodes_pruned": 6},
    }
    import jsonschema

    schema = json.loads((APP.parent / "circuits" / "schemas" / "attribution_graph.schema.json").read_text())
    jsonschema.validate(doc, schema)
    return doc


def test_graph_page_draws_prunes_and_links_features(tmp_path):
    from sae.atomic import write_json

    run = tmp_path / "run"
    at = _run("graph", run.parent)
    assert "saelab graph" in at.info[0].value  # no graph yet: how to make one
    write_json(run / "graph.json", small_graph())
    from app.run_dir import check_run_dir

    check_run_dir(run)  # a directory holding only a graph is something to explore
    at = _run("graph", run)
    assert len(at.get("plotly_chart")) == 1
    text = _text(at)
    assert "Feature_dashboard?sae=tc0&feature=7" in text and "Feature_dashboard?sae=tc1&feature=9" in text
    assert "5 nodes, 3 links at threshold 0.80" in text  # the error (cumulative 0.9) is pruned
    at.slider[0].set_value(0.5).run()
    text = _text(at)
    assert "feature=9" not in text and "feature=7" in text
    assert "4 nodes, 1 links at threshold 0.50" in text


def test_feature_page_shows_explanation_places_density_and_loss_effect(explorer_run):
    from app.dashboard_data import read_features

    feats = read_features(explorer_run / "topk")
    at = _run("feature", explorer_run, sae="topk", feature="3")
    assert "tokens about a shop" in at.info[0].value and "score: 0.7" in _text(at)
    heads = [h.value for h in at.subheader]
    assert "Loss effect of ablating the feature" in heads and "In saved circuits and graphs" in heads
    specs = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("Activation density" in s for s in specs) and any("Logit effects over" in s for s in specs)
    assert "blocks.1.hook_resid_post" in _text(at) or "graph_ioi.json" in _text(at)
    if feats["count"][3] > 0:
        assert any("Δ next-token loss" in c.value for c in at.caption)
        assert 'title="' in _text(at)


def test_search_page_by_token_explanation_and_prompt(explorer_run):
    from app.dashboard_data import read_features
    from app.search import read_token_index

    at = _run("search", explorer_run, sae="topk")
    index = read_token_index(explorer_run / "topk")
    token = index.sort_values("score").token.iloc[-1]
    at.text_input(key="q_token").input(token).run()
    assert not at.exception
    frames = [d.value for d in at.dataframe if "fire_rate" in d.value.columns]
    assert frames and frames[0].feature.iloc[0] == index[index.token == token].sort_values("score").feature.iloc[-1]
    at.text_input(key="q_text").input("shop").run()
    explained = [d.value for d in at.dataframe if "explanation" in d.value.columns]
    assert explained and explained[0].feature.tolist() == [3]
    assert "feature=3" in _text(at)
    prompt = [d.value for d in at.dataframe if "max_act" in d.value.columns]
    assert prompt and len(prompt[0]) > 0  # the default prompt's top features
    feats = read_features(explorer_run / "topk")
    assert prompt[0]["top token"].iloc[0] == feats.top_token[int(prompt[0].feature.iloc[0])]


def test_prompt_explorer_steering_panel(explorer_run):
    at = _run("prompt", explorer_run, sae="topk")
    assert any(m.value.startswith("**With {") for m in at.markdown)
    assert len(at.get("plotly_chart")) == 1  # the next-token bars, both ways
    picked = at.multiselect(key="steer_features")
    picked.set_value([]).run()
    assert not at.exception
    without = next(m.value for m in at.markdown if m.value.startswith("**Without:**"))
    with_ = next(m.value for m in at.markdown if m.value.startswith("**With {}:**"))
    assert without.split(":**", 1)[1] == with_.split(":**", 1)[1]  # no feature: the same greedy text


def test_bad_feature_index_and_missing_records_are_messages(explorer_run, tmp_path):
    import shutil

    at = _run("feature", explorer_run, sae="topk", feature="100000")
    assert any("out of range" in e.value for e in at.error)
    at = _run("feature", explorer_run, sae="topk", feature="abc")
    assert any("not a feature index" in e.value for e in at.error)
    bare = tmp_path / "bare"
    shutil.copytree(explorer_run / "topk", bare / "topk", ignore=shutil.ignore_patterns("dashboard"))
    for page in ("browser", "feature", "search"):
        at = _run(page, bare, sae="topk")
        assert any("No SAE here has dashboard records" in w.value for w in at.warning), page
    broken = tmp_path / "broken"
    shutil.copytree(explorer_run / "topk", broken / "topk")
    (broken / "topk" / "dashboard" / "contexts.parquet").write_bytes(b"garbage")
    (broken / "topk" / "dashboard" / "token_index.parquet").write_bytes(b"garbage")
    at = _run("feature", broken, sae="topk", feature="3")
    assert any("unreadable" in e.value for e in at.error)
    at = _run("search", broken, sae="topk")
    assert any("unreadable" in w.value for w in at.warning)
