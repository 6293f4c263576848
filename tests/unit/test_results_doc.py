"""docs/results.md is generated from bench/results/*.json and must not go stale."""

from __future__ import annotations

import json
import shutil

import pytest

from bench.readme_tables import BEGIN, END, README, render_block, replace_block
from bench.results_doc import DOC, RESULTS_DIR, render
from sae.errors import SaelabError


def test_the_committed_page_is_what_the_results_give():
    assert DOC.is_file(), "docs/results.md is missing: run `saelab bench report > docs/results.md`"
    assert DOC.read_text(encoding="utf-8") == render(), (
        "docs/results.md is stale: run `saelab bench report > docs/results.md` and commit it"
    )


def test_the_page_quotes_the_figures_the_readme_quoted():
    page = render()
    for name in ("train", "harvest", "parity", "allocator", "memory", "circuits", "explorer", "soak"):
        assert f"\n## {name}\n" in page, name
    # figures as the README's tables gave them, read off the same JSON by hand
    # train, d_sae 8192: saelab sparse / dense, SAELens, sparsify, dictionary_learning tok/s, the three
    # speedups, sparse over dense, step over the GEMM, peak RSS per side
    assert (
        "| topk | 10% | 8,192 | 32 | 7,919 | 1,563 | 1,481 | 4,853 | 2,099 | 5.35 | 1.63 | 3.77 | 5.07 | 1.82 "
        "| 1,023 / 3,031 / 1,829 / 1,607 |" in page
    )
    assert "| topk | 0.0321 | 0.0322 | 0.9964 | 0.9875 |" in page  # parity's widest pair
    # the discrete-SAE 0.816 is its head-pair AUC, not an edge AUC; 0.677 is the paper's edge-method figure
    assert (
        "| organism | ioi | discrete-sae | 0.742 ± 0.045 | 0.666 ± 0.081 | – | 0.677 | 0.816 | 0.58 | 1.8 | 0.008 |"
        in page
    )
    # the held-out organism, the same columns (docs/validation.md)
    assert (
        "| organism-b | ioi | discrete-sae | 0.720 ± 0.050 | 0.800 ± 0.070 | – | 0.582 | 0.718 | 0.54 | 3.2 | 0.006 |"
        in page
    )
    assert "| minor page faults per 1M tokens, harvest | 16,730 | 662,445 |" in page
    assert "| train | 20 | 20 |" in page and "| cache | 5 | 5 |" in page
    assert "| `topk+rescale_acts_by_decoder_norm` | topk | 0.0e+00 | 4.8e-07 | 9.5e-07 | 9.5e-07 | yes |" in page


def test_a_changed_figure_changes_the_page(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(RESULTS_DIR, results)
    doc = json.loads((results / "parity.json").read_text())
    row = next(r for r in doc["result"] if r["sae"] == "topk")
    row["fvu_ratio"], row["within_1pct"] = 1.0312, False
    (results / "parity.json").write_text(json.dumps(doc))
    page = render(results)
    assert page != render() and "| topk | 0.0321 | 0.0322 | 1.0312 | 0.9875 | 16.00 | 16.00 | no |" in page


def test_a_new_benchmark_appears_without_an_edit(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    shutil.copy(RESULTS_DIR / "soak.json", results)
    doc = {"kind": "bench", "name": "roofline_cuda", "result": {"step_over_encoder_gemm": 1.25, "hooks": ["h"]}}
    (results / "roofline_cuda.json").write_text(json.dumps(doc))
    page = render(results)
    assert page.index("## soak") < page.index("## roofline_cuda")  # known benchmarks first
    assert "| `step_over_encoder_gemm` | 1.25 |" in page and "`saelab bench roofline`" in page
    assert "hooks" not in page.split("## roofline_cuda")[1]  # lists are not figures


def test_circuit_rows_name_their_model_and_old_rows_mean_the_organism(tmp_path):
    from bench.results_doc import _circuits

    def row(task, auc, **kw):
        return {
            **{"task": task, "method": "eap", "ground_truth": "path_patching", "roc_auc": auc},
            **{"seconds": 1.0, "n_prompts": 100, **kw},
        }

    doc = {"result": [row("ioi", 0.9), row("ioi", 0.8, model="organism-b")]}
    page = "\n".join(_circuits(doc))
    assert "| model | task | method |" in page and "Every method on `organism`, `organism-b`" in page
    assert "| organism | ioi | eap | 0.900 |" in page and "| organism-b | ioi | eap | 0.800 |" in page


def test_explorer_section_with_builds_and_pages():
    from bench.results_doc import _explorer

    result = {
        "builds": [
            {"d_sae": 16384, "n_tokens": 1048576, "build_s": 512.3, "extrapolated": True, "measured": {"262144": 171.0}}
        ],
        "pages": {"search": {"median_s": 0.123, "max_s": 0.456}},
        "pages_d_sae": 16384,
        "hook": "blocks.1.hook_resid_post",
        "torch_threads": 2,
        "precomputed": "P",
        "on_demand": "D",
    }
    text = "\n".join(_explorer({"result": result}))
    assert "512 (extrapolated)" in text and "262,144: 171 s" in text
    assert "| `search` | 0.12 | 0.46 |" in text and "Precomputed: P. On demand: D." in text


def test_feature_circuit_rows_get_their_own_table_and_others_none():
    from bench.results_doc import _circuits

    base = {"task": "ioi", "ground_truth": "path_patching", "roc_auc": 0.9, "seconds": 1.0, "n_prompts": 100}
    plain = {"result": [{**base, "method": "eap"}]}
    assert "Feature circuits" not in "\n".join(_circuits(plain))
    fc = {
        **base,
        **{"method": "feature-circuit", "model": "organism-b", "faithfulness": 0.4567, "completeness": 0.1234},
        **{"n_nodes": 1234, "n_error_nodes": 7, "n_edges": 88, "n_features_for_faithfulness_0.8": None},
    }
    page = "\n".join(_circuits({"result": [{**base, "method": "eap"}, fc, {**fc, "ground_truth": "faithfulness"}]}))
    assert "Feature circuits" in page
    assert "| organism-b | ioi | 1,234 | 7 | 88 | 0.457 | 0.123 | – |" in page
    assert page.count("| organism-b | ioi | 1,234 |") == 1  # one row per model and task, not per ground truth


def test_peer_rows_whose_coefficient_search_stopped_say_so():
    from bench.results_doc import _peers

    base = {"family": "jumprelu_ste", "pair": "jumprelu", "peer": "saelens", "peer_version": "6", "meets_bar": False}
    figures = dict.fromkeys(("fvu", "peer_fvu", "fvu_ratio", "l0", "peer_l0", "dead_fraction"), 0.5)
    figures |= dict.fromkeys(("peer_dead_fraction", "tokens_per_s", "peer_tokens_per_s", "tokens_per_s_ratio"), 1.0)
    figures |= {"seconds_per_step": 0.0125, "peer_seconds_per_step": 0.04}
    row = {**base, **figures, "n_tokens": 4096, "batch_size": 1024, "d_sae": 64, "threads": 1}
    stopped = {"ours_stopped": "L0 does not answer the knob: 980 at 1, 983 at 16 (target 16)", "peer_stopped": None}
    lines = _peers({"result": [{**row, "coefficient_search": stopped}, {**row, "family": "topk", "pair": "topk"}]})
    notes = lines[lines.index("Coefficient searches that stopped short of the target L0:") :]
    assert "- jumprelu_ste vs saelens, saelab: L0 does not answer the knob: 980 at 1, 983 at 16 (target 16)" in notes
    assert not any("saelens, saelens" in n or "topk" in n for n in notes)
    assert "Coefficient searches" not in "\n".join(_peers({"result": [row]}))
    assert "come from 2 runs" in _peers({"result": [row], "runs": [{}, {}]})[0]
    assert "runs" not in _peers({"result": [row], "runs": [{}]})[0]


def test_peer_rows_show_steps_and_the_lrs_their_search_chose():
    from bench.results_doc import _peers

    figures = dict.fromkeys(("fvu", "peer_fvu", "fvu_ratio", "l0", "peer_l0", "dead_fraction"), 0.5)
    figures |= dict.fromkeys(("peer_dead_fraction", "tokens_per_s", "peer_tokens_per_s", "tokens_per_s_ratio"), 1.0)
    figures |= {"seconds_per_step": 0.0125, "peer_seconds_per_step": 0.04}
    base = {"family": "topk", "pair": "topk", "peer": "sparsify", "peer_version": "1", "meets_bar": True, **figures}
    base |= {"n_tokens": 409600, "batch_size": 1024, "d_sae": 64, "threads": 1, "steps": 400}
    searched = {"ours_lr": 0.0032, "ours_lr_factor": 4.0, "peer_lr": 0.02, "peer_lr_factor": 1.0}
    jr = {**base, "pair": "jumprelu", "family": "jumprelu_ste", "n_tokens": 6144000, "steps": 6000}
    page = "\n".join(_peers({"result": [{**base, "lr_search": searched}, jr]}))
    assert "409,600 training rows" in page and "| 6,000 |" in page and "| 400 |" in page
    assert "| 12.5 / 40.0 |" in page  # the median steps, in ms, beside the whole-loop tokens/s
    assert "- topk vs sparsify: saelab 0.0032 (×4), sparsify 0.02 (×1)" in page
    assert "jumprelu_ste vs sparsify: saelab" not in page


def test_the_readme_tables_are_what_the_results_give():
    block = render_block()
    assert block in README.read_text(encoding="utf-8"), (
        "README.md's performance tables are stale: run `saelab bench report --readme > docs/results.md` and commit it"
    )
    # a row read off peers.json by hand: TopK vs SAELens, FVU 0.04209 / 0.04664; 409,600 tokens in
    # 5.961 / 15.047 s of training loop: 68,717 / 27,221 tok/s
    assert "| topk | saelens | 0.902 | 16.0 / 16.0 | 2.52 | yes |" in block


def test_the_readme_block_follows_the_json_and_needs_its_markers(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(RESULTS_DIR, results)
    doc = json.loads((results / "harvest.json").read_text())
    doc["result"]["speedup_vs_saelens"] = 0.5
    (results / "harvest.json").write_text(json.dumps(doc))
    block = render_block(results)
    assert "0.50× SAELens' ActivationsStore with one hook" in block
    text = f"intro\n{BEGIN}\nold\n{END}\nrest\n"
    assert replace_block(text, block) == f"intro\n{block}\nrest\n"
    with pytest.raises(SaelabError, match="marker"):
        replace_block("no markers here\n", block)
