"""Cross-fitting (no item judged by a judge that saw it), the gate's reasoning check and strategy choice, and
panels whose SDK is missing."""

import json
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import yaml

from flywheel_lib import load_taxonomy
from flywheel_lib.curation import calibration as cal
from flywheel_lib.curation import gate
from flywheel_lib.curation.split import calibration_split, stratified_folds
from flywheel_lib.data.stats import match_key
from flywheel_lib.judges import BACKENDS, PanelError, load_panel
from flywheel_lib.judges.base import OfflineJudge
from flywheel_lib.judges.crossfit import cross_fit
from flywheel_lib.records import Verdict
from flywheel_lib.testing import toy_seed

TAX = "params/taxonomy/segments.yaml"


class MemoJudge(OfflineJudge):
    """Answers only the texts it was fitted on (their gold label); abstains on anything else."""

    def fit(self, fewshot):
        self.seen_ = {match_key(t): lab for t, lab in zip(fewshot["text"], fewshot["label"])}
        self._set_state(sorted(self.seen_.items()))
        return self

    def predict(self, items):
        return [Verdict(item_id=str(i), judge=self.name, category=self.seen_[match_key(t)], reason_key="seen")
                if match_key(t) in self.seen_ else Verdict.abstain(str(i), self.name, "never seen")
                for i, t in zip(items["item_id"], items["text"])]


@pytest.fixture
def memo_panel(tmp_path, monkeypatch):
    monkeypatch.setitem(BACKENDS, "memo", MemoJudge)
    path = tmp_path / "memo.yaml"
    path.write_text(yaml.safe_dump({"name": "memo", "judges": [{"name": "memo", "backend": "memo"}]}))
    return str(path)


def test_stratified_folds_cover_every_item_once_and_balance_labels():
    seed = toy_seed()
    f = stratified_folds(seed, k=3, seed=1)
    assert sorted(f["item_id"]) == sorted(seed["item_id"]) and set(f["fold"]) == {0, 1, 2}
    per = f.groupby(["label", "fold"]).size().unstack(fill_value=0)
    assert (per.max(axis=1) - per.min(axis=1)).max() <= 1
    assert f.equals(stratified_folds(seed.sample(frac=1, random_state=3), k=3, seed=1)
                    .set_index("item_id").loc[f["item_id"]].reset_index())
    with pytest.raises(ValueError, match="cv_folds"):
        stratified_folds(seed, k=1)


def test_cross_fit_never_judges_an_item_with_a_judge_that_saw_it(memo_panel):
    tax = load_taxonomy(TAX)
    seed = toy_seed()
    # a duplicate text under another id: it must not leak its twin's label through the fit
    seed = pd.concat([seed, seed.iloc[[0]].assign(item_id="dup0")], ignore_index=True)
    folds = calibration_split(seed, cv_folds=4, fraction=0.3, seed=7)
    res = cross_fit(lambda: load_panel(memo_panel, taxonomy=tax), seed, folds)
    assert len(res.verdicts) == len(seed) and set(res.verdicts["item_id"]) == set(seed["item_id"])
    assert res.verdicts["category"].isna().all(), "a judge answered an item it was fitted on"
    for f, judged in res.judged_ids.items():
        assert not set(judged) & set(res.fit_ids[f])
    assert res.log["n_dropped_duplicates"].sum() >= 1
    # the control: the same judge fitted on everything recognises every item (the check above can fail)
    seen = load_panel(memo_panel, taxonomy=tax).fit(seed).judge(seed, cache_dir=None, progress=False)
    assert seen["category"].notna().all()


def _verdicts(rows):
    cols = ["rationale", "model", "prompt_hash", "tokens_in", "tokens_out", "cost_usd", "latency_s", "cached", "error"]
    v = pd.DataFrame(rows, columns=["item_id", "judge", "category", "reason_key"])
    for c in cols:
        v[c] = None
    v["rationale"] = v["reason_key"]
    return v


def by_rationale_rows(checks):
    return int(checks.set_index("strategy").loc["rationale", "accepted"])


def test_gate_picks_evidence_when_the_seed_has_no_reason_keys():
    # 20 items: both judges say "a"; their reason keys differ as strings but cite a shared term on 15
    rows, gold = [], {}
    for i in range(20):
        iid = f"i{i}"
        gold[iid] = "a" if i < 18 else "b"
        rows += [(iid, "j1", "a", f"col{i},x{i}"), (iid, "j2", "a", f"col{i}" if i < 15 else f"other{i}")]
    v, g = _verdicts(rows), pd.Series(gold)
    checks = gate.reasoning_checks(v, g, judges=["j1", "j2"], labels=["a", "b"], rationale_similarity=0.8,
                                   embedder=lambda t: np.eye(len(t), 8))  # rationales all dissimilar
    assert by_rationale_rows(checks) == 0
    by = checks.set_index("strategy")
    assert by.loc["reason_key", "accepted"] == 0 and by.loc["evidence", "accepted"] == 15
    with warnings.catch_warnings():
        warnings.simplefilter("error", gate.GateWarning)
        r = gate.choose_reasoning(checks, has_reasons=False)
    assert r["reasoning"] == "evidence" and r["coverage"] == 0.75 and not r["warning"]
    # with reason keys in the seed the keys are compared, and a gate that accepts nothing says so loudly
    with pytest.warns(gate.GateWarning, match="ACCEPTS NOTHING"):
        r = gate.choose_reasoning(checks, has_reasons=True)
    assert r["reasoning"] == "reason_key" and r["warning"]


def _ladder_verdicts():
    """3 judges, 100 items: all agree (right) on 10, two of three agree on 70 (60 right), split on 20."""
    rows, gold = [], {}
    for i in range(100):
        iid = f"i{i}"
        gold[iid] = "a"
        if i < 10:
            votes = ["a", "a", "a"]
        elif i < 70:
            votes = ["a", "a", "b"]
        elif i < 80:
            votes = ["b", "b", "a"]
        else:
            votes = ["a", "b", "c"]
        rows += [(iid, f"j{k}", c, "r") for k, c in enumerate(votes)]
    return _verdicts(rows), pd.Series(gold)


def test_target_precision_walks_to_a_looser_strategy_and_refuses_to_pretend():
    v, g = _ladder_verdicts()
    ladder = gate.ladder_table(v, g, judges=["j0", "j1", "j2"], labels=["a", "b", "c"], reasoning="reason_key")
    assert ladder["strategy"].tolist()[:2] == ["unanimous[reason_key]", "unanimous_category_only"]
    # the strict rung is precise (1.0) but covers 10%: below the coverage asked for, so the next meeting rung wins
    c = gate.choose_strategy(ladder, target_precision=0.85, min_coverage=0.5)
    assert c["met"] and c["name"] == "k_of_n" and c["params"] == {"k": 2} and c["coverage"] == 0.8
    assert c["precision"] == pytest.approx(70 / 80)
    # no target: the seed's rule
    assert gate.choose_strategy(ladder, target_precision=0.0)["strategy"] == "unanimous[reason_key]"
    # a target nothing meets at that coverage: it says so and keeps the strictest
    with pytest.warns(gate.GateWarning, match="NO STRATEGY MEETS"):
        c = gate.choose_strategy(ladder, target_precision=0.95, min_coverage=0.5)
    assert c["met"] is False and c["strategy"] == "unanimous[reason_key]"


def test_resolve_uses_the_calibrated_choice_unless_the_recipe_names_a_strategy(tmp_path):
    v, g = _ladder_verdicts()
    ladder = gate.ladder_table(v, g, judges=["j0", "j1", "j2"], labels=["a", "b", "c"], reasoning="evidence")
    choice = gate.choose_strategy(ladder, target_precision=0.85, min_coverage=0.5)
    record = {"gate": {"reasoning": {"reasoning": "evidence"}, "choice": choice}}
    s, note = gate.gate_for_resolve(record, strategy="auto", judges=["j0", "j1", "j2"], labels=["a", "b", "c"])
    assert note["source"] == "01_calibrate" and s.name == "k_of_n" and s.k == 2
    s, note = gate.gate_for_resolve(record, strategy="unanimous", judges=["j0", "j1", "j2"], labels=["a", "b", "c"])
    assert note["source"] == "recipe" and s.name == "unanimous" and s.reasoning == "evidence"
    s, note = gate.gate_for_resolve({}, strategy="auto", judges=["j0", "j1", "j2"], labels=["a", "b", "c"])
    assert note["source"].startswith("default") and s.name == "unanimous"


@pytest.mark.slow
def test_triagesql_panel_out_of_fold_kappa_and_gate_accepts_labels(triagesql_path):
    from flywheel_lib.domains import get_domain
    from flywheel_lib.taxonomy_lab import fit_pool

    rows = [json.loads(x) for x in triagesql_path.read_text().splitlines()][::3]  # 319 rows, every class
    seed = pd.DataFrame({"item_id": [r["id"] for r in rows], "text": [r["question"] for r in rows],
                         "context": [json.dumps(r["schema"]) for r in rows], "label": [r["label"] for r in rows],
                         "reason_key": None})
    tax = load_taxonomy("params/taxonomy/triagesql.yaml")
    dom = get_domain("triagesql")
    folds = stratified_folds(seed, k=3, seed=7)
    res = cross_fit(lambda: load_panel("params/judges/triagesql.yaml", taxonomy=tax, domain=dom), seed, folds,
                    pool=lambda tr, te: fit_pool(tr, tax, exclude=te["text"]))
    gold = seed.set_index("item_id")["label"]
    kappa = cal.judge_report(res.verdicts, gold, labels=tax.ids).set_index("judge")["kappa"]
    assert kappa["linear"] >= 0.45
    judges = sorted(res.verdicts["judge"].unique())
    checks = gate.reasoning_checks(res.verdicts, gold, judges=judges, labels=tax.ids)
    r = gate.choose_reasoning(checks, has_reasons=gate.seed_has_reasons(seed))
    assert r["reasoning"] in ("evidence", "rationale") and r["coverage"] > 0
    accepted = checks.set_index("strategy").loc[r["reasoning"]]
    assert accepted["accepted"] > 0 and accepted["precision"] > 0.5


@pytest.mark.parametrize("backend,modules,extra", [("openai", ["aiohttp"], "openai"),
                                                   ("anthropic", ["aiohttp"], "anthropic")])
def test_a_panel_whose_client_is_missing_fails_at_load_naming_the_extra(tmp_path, monkeypatch, backend, modules,
                                                                         extra):
    for m in modules:
        monkeypatch.setitem(sys.modules, m, None)  # import m -> ImportError
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"name": "p", "judges": [
        {"name": "api", "backend": backend, "model": "m", "api_key_env": "UNSET_KEY_VAR_FOR_TEST"}]}))
    with pytest.raises(PanelError, match=rf'pip install -e "\.\[{extra}\]"'):
        load_panel(path, taxonomy=load_taxonomy(TAX))


def test_the_folded_panel_rejudges_each_item_with_the_panel_that_never_saw_it(memo_panel):
    tax = load_taxonomy(TAX)
    seed = toy_seed()
    folds = calibration_split(seed, cv_folds=3, fraction=0.3, seed=7)
    res = cross_fit(lambda: load_panel(memo_panel, taxonomy=tax), seed, folds)
    pan = res.panel
    assert pan.names == ["memo"] and sorted(pan.panels) == [0, 1, 2]
    again = pan.judge(seed.iloc[::-1], cache_dir=None, progress=False)
    assert again["item_id"].tolist() == seed["item_id"].iloc[::-1].tolist()
    assert again["category"].isna().all()  # every item went to its own fold's panel, fitted without it
    assert int(pan.stats_.set_index("judge").loc["memo", "items"]) == len(seed)
    with pytest.raises(ValueError, match="not judged out of fold"):
        pan.judge(seed.assign(item_id="stranger").iloc[:1], cache_dir=None, progress=False)
