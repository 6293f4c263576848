"""Supervised-dictionary evaluations end to end on the organism's IOI circuit (small settings)."""

from __future__ import annotations

import json

import pytest
import torch
from supervised_fixtures import SMALL, one_thread

from evals.supervised.config import SupervisedConfig
from evals.supervised.locations import PRIMARY, cross_sections
from evals.supervised.prompts import build_prompts, make_split


def test_organism_cross_sections_come_from_the_circuit_roles():
    found = {x.name: x for x in cross_sections("organism")}
    data = json.loads((__import__("circuits.ground_truth", fromlist=["x"]).organism_circuits_file()).read_text())
    movers = sorted((n["layer"], n["head"]) for n in data["ioi"]["nodes"] if "name_mover" in n["roles"])
    assert list(found[PRIMARY].heads) == movers == [(2, 0), (2, 1), (2, 2), (2, 6)]
    inhibition = {(n["layer"], n["head"]) for n in data["ioi"]["nodes"] if "s_inhibition" in n["roles"]}
    assert set(found["s_inhibition z@END"].heads) == inhibition and (1, 6) in inhibition  # a head with two roles
    assert [loc.key for loc in found["name_mover k@IO,S1"].locations][:2] == ["2.0.k@IO", "2.0.k@S1"]
    assert "induction+duplicate z@S2" not in found  # the organism has no induction heads


@pytest.mark.parametrize("model", ["organism", "gpt2"])
def test_the_name_movers_q_and_k_are_one_cross_section_as_the_paper_evaluates_them(model):
    """Makelov et al.'s "(B)NM q+k": every (B)NM head's query at END and keys at IO and S1,
    together; the split sections stay beside it and together hold the same locations."""
    found = {x.name: x for x in cross_sections(model)}
    qk = found["name_mover q+k"]
    assert qk.heads == found[PRIMARY].heads and qk.site == "q+k"
    by_site = {}
    for loc in qk.locations:
        by_site.setdefault(loc.site, set()).add(loc.position)
    assert by_site == {"q": {"END"}, "k": {"IO", "S1"}}  # positions as the ground-truth definition gives them
    assert set(qk.locations) == set(found["name_mover q@END"].locations) | set(found["name_mover k@IO,S1"].locations)
    assert len(qk.locations) == 3 * len(qk.heads)
    described = qk.describe()
    assert described["parts"] == [{"site": "q", "positions": ["END"]}, {"site": "k", "positions": ["IO", "S1"]}]
    assert described["positions"] == ["END", "IO", "S1"]


def test_gpt2_cross_sections_use_wang_et_al_roles():
    found = {x.name: x for x in cross_sections("gpt2")}
    assert {(9, 9), (9, 6), (10, 0), (10, 10), (11, 9)} <= set(found[PRIMARY].heads)
    assert set(found["s_inhibition v@S2"].heads) == {(7, 3), (7, 9), (8, 6), (8, 10)}
    assert set(found["induction+duplicate z@S2"].heads) == {(5, 5), (5, 8), (5, 9), (6, 9), (0, 1), (0, 10), (3, 0)}


def test_split_and_counterfactual_prompts(organism):
    _, tok = organism
    cfg = SupervisedConfig.model_validate(SMALL).prompts
    prompts = build_prompts(tok, cfg)
    split = make_split(tok, cfg)
    assert not set(split.base_names) & set(split.counterfactual_names)
    assert set(split.base_names) | set(split.counterfactual_names) == set(split.names)
    assert all(p.io in split.base_names and p.s in split.base_names for p in prompts.eval.specs)
    assert all(p.template not in split.heldout_templates for p in prompts.fit.specs)
    assert {p.template for p in prompts.heldout.specs} == set(split.heldout_templates)
    base, cf_io, cf_pos = prompts.eval, prompts.counterfactuals["IO"], prompts.counterfactuals["Pos"]
    for p, q, r in zip(base.specs, cf_io.specs, cf_pos.specs, strict=True):
        assert q.io in split.counterfactual_names and (q.s, q.pos, q.template) == (p.s, p.pos, p.template)
        assert (r.io, r.s) == (p.io, p.s) and r.pos != p.pos
    # positions are semantic: the token at IO is the IO name in both orders
    for batch, specs in ((base.batch, base.specs), (cf_pos.batch, cf_pos.specs)):
        rows = torch.arange(len(specs))
        io_tokens = batch.tokens[rows, batch.positions["IO"]]
        assert io_tokens.tolist() == [tok.encode(" " + p.io)[0] for p in specs]
    assert torch.equal(cf_pos.batch.positions["IO"], base.batch.positions["S1"])


def test_acceptance_on_the_name_movers(supervised_run):
    doc, _ = supervised_run
    acc = doc["acceptance"]
    assert acc["cross_section"] == PRIMARY and acc["control_attributes"] == ["IO"]
    assert acc["supervised_mean_sufficiency"] >= 0.8
    assert acc["supervised_mean_control"] >= 0.8
    assert acc["met"]


def test_results_name_dictionaries_and_evaluations(supervised_run):
    doc, out = supervised_run
    assert doc["kind"] == "supervised" and doc["schema_version"] == 1 and doc["model"] == "organism"
    assert json.loads((out / "supervised.json").read_text())["table"] == json.loads(json.dumps(doc["table"]))
    expected = {
        "supervised_mean",
        "supervised_mse",
        "topk_task",
        "relu_task",
        "random_decoder_task",
        "topk_full",
        "relu_full",
    }
    assert set(doc["results"]) == expected
    for key in expected:
        assert set(doc["results"][key]) == {"sufficiency", "necessity", "control", "interpretability"}
    assert doc["hook"] == [f"blocks.2.attn.hook_z[{h}]" for h in (0, 1, 2, 6)]
    # L0 is matched: k-families at the target; ReLU picked from its grid per location
    assert doc["dictionaries"]["topk_task"]["l0_eval_mean"] == pytest.approx(4.0)
    rows = {r["dictionary"]: r for r in doc["table"]}
    assert rows["topk_task"]["l0_matched"] and rows["supervised_mean"]["l0_matched"]
    assert doc["acceptance"]["outside_l0_band"] == sorted(k for k, r in rows.items() if not r["l0_matched"])
    assert set(doc["dictionaries"]["relu_task"]["variants"].values()) <= {"relu_l1=2", "relu_l1=4"}
    ctrl = doc["results"]["topk_task"]["control"][PRIMARY]
    assert set(ctrl["success_by_k"]) == {"2"}
    assert ctrl["attributes"]["S"]["edited"] is False  # the S patch changes no prediction here
    interp = doc["results"]["supervised_mean"]["interpretability"][PRIMARY]
    assert interp["fraction_interpretable"] == pytest.approx(1.0)  # each feature is its attribute value


def test_report_section_has_figures_and_tables(supervised_run):
    from evals.supervised.report import supervised_section

    doc, out = supervised_run
    section = supervised_section([doc])
    titles = [f.layout.title.text for f in section.figures]
    assert any(t.startswith("Sufficiency") for t in titles) and any(t.startswith("Necessity") for t in titles)
    control = next(f for f in section.figures if f.layout.title.text.startswith("Control:"))
    lines = {tr.name: list(tr.x) for tr in control.data if tr.x is not None}
    assert lines["topk (task)"] == [2]  # success against k
    assert section.tables[0].rows and section.tables[0].rows[0]["label"] == "mean-feature (supervised)"
    page = (out / "report.html").read_text()
    assert "Supervised dictionaries on IOI" in page and "Acceptance at name_mover z@END" in page


def test_explorer_supervised_page_shows_the_real_results(supervised_run, monkeypatch):
    """The explorer's Supervised page on the directory a real run wrote: its tables and
    plots, the same ones the report shows (issue 8)."""
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from evals.supervised.report import supervised_section

    doc, out = supervised_run
    monkeypatch.setenv("SAELAB_RUN_DIRS", str(out))
    page = Path(__file__).resolve().parents[2] / "app" / "pages" / "5_Supervised.py"
    at = AppTest.from_file(str(page), default_timeout=120)
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.exception] + [e.value for e in at.error]
    assert any(h.value == "Supervised dictionaries on IOI" for h in at.subheader)
    specs = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("Sufficiency" in s for s in specs) and any("Necessity" in s for s in specs)
    labels = at.dataframe[0].value["label"].tolist()
    assert labels == [r["label"] for r in supervised_section([doc]).tables[0].rows]
    assert "mean-feature (supervised)" in labels


def test_control_succeeds_on_a_planted_dictionary(organism, supervised_prep):
    """An 'SAE' whose features are the supervised ones (codes = the attribute one-hots): its
    greedy edit, within k = 2, must find the IO exchange and succeed as the supervised edit does."""
    from evals.supervised.dictionaries import Family, supervised_families
    from evals.supervised.evaluate import Evaluator
    from evals.supervised.prompts import AttributeVocab

    model, _ = organism
    prep = supervised_prep
    cfg = SupervisedConfig.model_validate({**SMALL, "eval": {**SMALL["eval"], "ks": [1, 2]}}).eval
    mse = supervised_families(prep.acts["fit"], prep.prompts.fit.specs, AttributeVocab(prep.prompts.split.names))[1]
    planted = Family("planted_task", "planted", "task", "planted", mse.dictionaries)
    xs = prep.sections[0]
    with one_thread():
        evaluator = Evaluator(model, prep.prompts, prep.acts, cfg)
        io_sup = evaluator.control(mse, xs)["attributes"]["IO"]
        io_planted = evaluator.control(planted, xs)["attributes"]["IO"]["by_k"]
    assert io_sup["success"] >= 0.9
    assert io_planted["2"]["success"] >= io_sup["success"] - 0.1
    assert 1.5 <= io_planted["2"]["features_changed"] <= 2.0  # mostly: remove IO=v, add IO=v'
    assert io_planted["1"]["success"] < 0.5 < io_planted["2"]["success"]  # one feature cannot make the exchange
