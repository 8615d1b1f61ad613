"""The baseline judge (TF-IDF n-grams + logistic regression) on the toy seed, and the panel-vs-baseline comparison
on hand-made tables with the expected figures beside them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from flywheel_lib.curation.calibration import compare_with_baseline, judge_report, precision_at_coverage
from flywheel_lib.curation.split import stratified_folds
from flywheel_lib.judges import BACKENDS, PanelError, load_panel
from flywheel_lib.judges.baseline import BaselineJudge, baseline_panel, confidence
from flywheel_lib.judges.crossfit import cross_fit
from flywheel_lib.taxonomy import load_taxonomy
from flywheel_lib.testing import toy_items, toy_seed


@pytest.fixture(scope="module")
def tax():
    return load_taxonomy("params/taxonomy/segments.yaml")


def test_baseline_is_a_registered_backend_usable_in_a_panel_file(tax, tmp_path):
    assert "baseline" in BACKENDS
    f = tmp_path / "panel.yaml"
    f.write_text("name: p\njudges:\n  - {name: linear, backend: linear}\n"
                 "  - {name: base, backend: baseline, params: {C: 2.0}}\n")
    pan = load_panel(f, taxonomy=tax).fit(toy_seed())
    assert pan.names == ["linear", "base"]
    assert isinstance(pan.judges[1], BaselineJudge)
    v = pan.judge(toy_items(), cache_dir=tmp_path / "cache", progress=False)
    assert (v["judge"] == "base").sum() == len(toy_items())
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: p\njudges:\n  - {name: base, backend: baseline, params: {context: true}}\n")
    with pytest.raises(PanelError, match="params.context"):  # the extras of the linear judge are not options here
        load_panel(bad, taxonomy=tax)


def test_baseline_answers_every_item_reads_no_context_and_ranks_by_probability(tax):
    pan = baseline_panel(taxonomy=tax).fit(toy_seed())
    items = toy_items()
    v = pan.judge(items, cache_dir=None, progress=False)
    assert v["category"].notna().all()  # never abstains
    with_ctx = pan.judge(items.assign(context="customers: amount_spent, age"), cache_dir=None, progress=False)
    assert with_ctx["category"].tolist() == v["category"].tolist()
    p = confidence(v)
    assert p.index.tolist() == items["item_id"].tolist()
    assert ((p > 0) & (p <= 1)).all()
    # a plain n-gram classifier on 30 rows still gets most of the 10 unseen toy requests
    assert (v["category"].to_numpy() == items["label"].to_numpy()).mean() >= 0.7


def test_baseline_cross_fits_like_a_panel(tax):
    seed = toy_seed()
    folds = stratified_folds(seed, k=3, seed=0)
    cf = cross_fit(lambda: baseline_panel(taxonomy=tax), seed, folds)
    assert sorted(cf.verdicts["item_id"]) == sorted(seed["item_id"])  # every seed item, judged out of fold
    for f, judged in cf.judged_ids.items():
        assert not set(judged) & set(cf.fit_ids[f])
    r = judge_report(cf.verdicts, seed.set_index("item_id")["label"], labels=tax.ids).iloc[0]
    assert r["judge"] == "baseline" and r["abstain_rate"] == 0
    assert -1 <= r["kappa_lo"] <= r["kappa"] <= r["kappa_hi"] <= 1


def test_kappa_interval_is_clipped_to_minus_one_one():
    # 9 of 10 agree on two classes: kappa 0.8, asymptotic interval 0.8 +- 1.96 * 0.19 would end near 1.17
    gold = pd.Series({f"i{k}": ("x" if k < 5 else "y") for k in range(10)})
    pred = ["x"] * 5 + ["x"] + ["y"] * 4
    v = pd.DataFrame({"item_id": gold.index, "judge": "j", "category": pred})
    r = judge_report(v, gold, labels=["x", "y"]).iloc[0]
    assert r["kappa"] == pytest.approx(0.8)
    assert r["kappa_hi"] == 1.0 and -1 <= r["kappa_lo"] < 0.8


GOLD = pd.Series({k: lab for k, lab in zip("abcdefgh", "xxxxyyyy")})
BASE = pd.DataFrame({"item_id": list("abcdefgh"), "judge": "baseline",
                     "category": list("xxyxyyxy"),  # wrong on c and g
                     "rationale": ["p=0.9", "p=0.8", "p=0.95", "p=0.7", "p=0.85", "p=0.6", "p=0.55", "p=0.5"]})


def test_precision_at_coverage_takes_the_most_confident_answers():
    conf = confidence(BASE)
    # the 4 surest: c (wrong) .95, a .9, e .85, b .8 -> 3 of 4
    assert precision_at_coverage(BASE, GOLD, conf, 0.5) == {"coverage": 0.5, "accepted": 4, "correct": 3,
                                                            "precision": 0.75}
    assert precision_at_coverage(BASE, GOLD, conf, 1.0)["precision"] == 0.75  # 6 of 8
    assert precision_at_coverage(BASE, GOLD, conf, 0.0)["precision"] is None


def _report(kappas: dict) -> pd.DataFrame:
    return pd.DataFrame({"judge": list(kappas), "kappa": list(kappas.values())})


def test_a_panel_that_does_not_beat_the_baseline_is_flagged():
    # baseline: 6 of 8 right -> kappa 0.5; at coverage 0.5 its precision is 0.75
    weak = compare_with_baseline(_report({"j1": 0.4, "j2": 0.3}), BASE, GOLD,
                                 {"precision": 0.7, "coverage": 0.5}, labels=["x", "y"])
    assert weak.baseline_kappa == pytest.approx(0.5)
    assert weak.baseline_precision == 0.75
    assert not weak.panel_beats_baseline and not weak.best_judge_beats_baseline
    assert weak.best_judge == "j1"
    assert weak.sentence().startswith("WARNING: the panel does not beat the baseline")
    assert "0.700 at coverage 0.500" in weak.sentence() and "0.750" in weak.sentence()
    strong = compare_with_baseline(_report({"j1": 0.9, "j2": np.nan}), BASE, GOLD,
                                   {"precision": 0.95, "coverage": 0.5}, labels=["x", "y"])
    assert strong.panel_beats_baseline and strong.best_judge_beats_baseline
    assert strong.sentence().startswith("The panel beats the baseline")
    assert strong.as_dict()["panel_beats_baseline"] is True
    nothing = compare_with_baseline(_report({"j1": 0.9}), BASE, GOLD, {"precision": None, "coverage": 0.0},
                                    labels=["x", "y"])
    assert not nothing.panel_beats_baseline  # a gate that accepts nothing does not beat anything
    assert "the gate accepts none of the out-of-fold seed items" in nothing.sentence()


def test_01_calibrate_reports_the_baseline_and_warns_of_a_class_without_seed_rows(tmp_path):
    import json
    import subprocess
    import sys

    run = tmp_path / "run"
    (run / "artifacts").mkdir(parents=True)
    seed = toy_seed()
    seed[seed["label"] != "ambiguous"].to_parquet(run / "artifacts" / "items.parquet", index=False)
    out = run / "01_calibrate.ipynb"
    cmd = [sys.executable, "-m", "papermill", "notebooks/01_calibrate.ipynb", str(out), "-k", "python3",
           "-p", "run_dir", str(run), "-p", "cache_dir", str(tmp_path / "cache"), "-p", "cv_folds", "3",
           "-p", "anchoring_n", "0"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    rec = json.loads((run / "metrics" / "01_calibrate.json").read_text())
    m, notes = rec["metrics"], rec["notes"]
    assert -1 <= m["kappa_baseline_lo"] <= m["kappa_baseline"] <= m["kappa_baseline_hi"] <= 1
    assert isinstance(m["panel_beats_baseline"], bool) and isinstance(m["best_judge_beats_baseline"], bool)
    assert notes["baseline"]["baseline_kappa"] == pytest.approx(m["kappa_baseline"], abs=1e-4)
    assert "baseline" not in json.loads((run / "artifacts" / "panel.json").read_text())["judges"]
    assert any(w.startswith("taxonomy class 'ambiguous' (clarify) has no seed rows") for w in notes["warnings"])
    text = json.dumps(json.loads(out.read_text())["cells"])
    assert "WARNING: taxonomy class 'ambiguous' (clarify) has no seed rows" in text
    assert "the panel does not beat the baseline" in text or "beats the baseline" in text
