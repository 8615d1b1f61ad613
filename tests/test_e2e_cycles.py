"""The whole workbench end to end: `params/smoke.yaml` for two linked cycles through the real runner, papermill,
the offline judges, LoRA fine-tuning of SmolLM2-135M and evaluation by execution; then the taxonomy lab on the
first cycle's run."""

from __future__ import annotations

import json

import pandas as pd
import papermill
import pytest
import yaml

from flywheel_lib.flywheel.cycles import run_cycles
from flywheel_lib.io import read_json

pytestmark = pytest.mark.slow
STAGES = ["00_data", "01_calibrate", "02_judge", "03_resolve", "04_finetune", "05_evaluate", "06_flywheel"]


SCHEDULE = "tests/fixtures/drift_capability.yaml"


@pytest.fixture(scope="module")
def lineage(tmp_path_factory):
    runs = tmp_path_factory.mktemp("e2e") / "runs"
    mp = pytest.MonkeyPatch()
    mp.setenv("FLYWHEEL_RUNS_DIR", str(runs))
    try:
        # cycle 1, then cycle 2 continuing its lineage (`flywheel cycles --after RUN`): the same as two at once
        # the default schedule with shoe sizes supported from cycle 2's traffic on (cycle 3 relabels)
        sets = [f"drift_schedule={SCHEDULE}"]
        name, first, _ = run_cycles("params/smoke.yaml", 1, progress=False, sets=sets)
        again, second, report = run_cycles("params/smoke.yaml", 1, progress=False, sets=sets,
                                           after=first[0].run_dir if first and first[0].ok else None)
        # a third cycle: scored against cycle 1's model too (lineage[3])
        third = run_cycles("params/smoke.yaml", 1, progress=False, sets=sets, after=second[0].run_dir)[1] \
            if second and second[0].ok else []
        yield (name if again == name else f"{name} != {again}"), first + second, report, third
    finally:
        mp.undo()


def test_two_cycles_run_every_stage(lineage):
    name, results, report, _ = lineage
    assert [r.status for r in results] == ["succeeded", "succeeded"], [r.failure for r in results]
    for cycle, r in enumerate(results, 1):
        m = read_json(r.run_dir / "manifest.json")
        assert [s["name"] for s in m["stages"]] == STAGES
        assert all(s["status"] == "succeeded" for s in m["stages"])
        assert m["parent"]["lineage"] == name and m["parent"]["cycle"] == cycle
        for stage in STAGES:
            assert (r.run_dir / "notebooks" / f"{stage}.html").exists()
        assert m["taxonomy"]["params/taxonomy/segments.yaml"].startswith("segments@1+")
    assert read_json(results[1].run_dir / "manifest.json")["parent"]["parent_run"] == results[0].run_id
    assert report.exists() and all(r.run_id in report.read_text() for r in results)
    from flywheel_lib.models import resolve_model_cache

    assert not (resolve_model_cache() / "models").exists()  # every stage found the one converted base model


def test_stage_contracts_and_truth_kept_apart(lineage):
    first = lineage[1][0].run_dir / "artifacts"
    items = pd.read_parquet(first / "items.parquet")
    assert set(items["source"]) == {"production", "seed", "eval"}
    assert not {"true_label", "gold_output", "family"} & set(items.columns)  # judges never see the truth
    assert (items.loc[items["source"] == "production", "label"] == "solvable").all()
    verdicts = pd.read_parquet(first / "verdicts.parquet")
    prod = set(items.loc[items["source"] == "production", "item_id"])
    assert set(verdicts["item_id"]) == prod  # every production item judged
    assert verdicts.groupby("item_id")["judge"].nunique().eq(3).all()  # by every judge, once
    train = pd.read_parquet(first / "train_sets.parquet")
    # smoke.yaml's 03 also writes the `all` policy's curated set (train_policies: [all]) for 04 and 05 to score
    assert set(train["variant"]) == {"production_only", "naive_merge", "curated", "curated_all"}
    by = {v: set(g["item_id"]) & prod for v, g in train.groupby("variant")}
    assert by["curated_all"] < by["curated"]  # `all` keeps only unanimous items; `changes` keeps those and more
    preds = pd.read_parquet(first / "predictions.parquet")
    assert {"production_only", "naive_merge", "curated", "curated_all"} <= set(preds["variant"])
    m = read_json(lineage[1][0].run_dir / "manifest.json")
    assert 0 <= m["metrics"]["05_evaluate"]["p_pass_rate_curated_vs_curated_all"] <= 1
    promo = m["notes"]["05_evaluate"]["promotion"]
    assert promo["winner"] in ("curated", "production_only") and promo["reason"]


def test_second_cycle_samples_the_deployed_models_traffic(lineage):
    first, second = (r.run_dir / "artifacts" for r in lineage[1])
    traffic = pd.read_parquet(first / "traffic.parquet")
    truth = pd.read_parquet(first / "traffic_truth.parquet")
    assert len(traffic) == 16 and set(truth["item_id"]) == set(traffic["item_id"])
    items2 = pd.read_parquet(second / "items.parquet")
    prod2 = items2[items2["source"] == "production"]
    assert set(prod2["item_id"]) <= set(traffic["item_id"]) and len(prod2) > 0
    # seed and eval stay the same across cycles, so the cycles are comparable
    items1 = pd.read_parquet(first / "items.parquet")
    for src in ("seed", "eval"):
        assert set(items1.loc[items1["source"] == src, "item_id"]) == set(items2.loc[items2["source"] == src, "item_id"])
    # the new labels are added to the corpus: cycle 2's curated set holds cycle 1's
    c1 = pd.read_parquet(first / "train_sets.parquet").query("variant == 'curated'")
    c2 = pd.read_parquet(second / "train_sets.parquet").query("variant == 'curated'")
    assert set(c1["item_id"]) <= set(c2["item_id"])
    m2 = read_json(lineage[1][1].run_dir / "manifest.json")
    assert m2["notes"]["06_flywheel"]["cycle_verdict"]  # says honestly what the cycle changed
    # the curation-policy comparison (curated_all) is trained and scored in the first cycle only
    assert "curated_all" not in read_json(second / "finetune.json")["variants"]
    assert not (second / "models" / "curated_all").exists()
    assert "p_pass_rate_curated_vs_curated_all" not in m2["metrics"]["05_evaluate"]
    assert m2["notes"]["04_finetune"]["policy_variants"].startswith("['curated_all'] skipped in a later cycle")
    assert m2["metrics"]["06_flywheel"]["n_traffic"] == 16


def test_taxonomy_lab_scripted_edit_moves_kappa(lineage, tmp_path):
    run = lineage[1][0].run_dir
    new_tax = tmp_path / "segments_v2.yaml"
    extra = ["customers who are kind of special", "shoppers who are pretty good", "buyers who matter most",
             "the usual suspects", "customers who are basically regulars", "people who are sort of engaged",
             "our nicest customers", "customers who feel premium"]
    out = tmp_path / "lab.ipynb"
    papermill.execute_notebook("notebooks/taxonomy_lab.ipynb", str(out), kernel_name="python3", progress_bar=False,
                               parameters={"run_dir": str(run), "lab_run_id": f"{run.name}-lab",
                                           "edit_category": "ambiguous",
                                           "edit_field": "add_positive", "edit_value": extra,
                                           "save_as": str(new_tax)})
    assert not (run / "metrics" / "taxonomy_lab.json").exists()  # the lab writes a new run, started from this one
    rec = read_json(run.parent / f"{run.name}-lab" / "metrics" / "taxonomy_lab.json")
    met = rec["metrics"]
    changes = [met[f"kappa_after_{j}"] - met[f"kappa_before_{j}"] for j in ("knn", "linear")]
    assert any(abs(c) > 1e-6 for c in changes), met  # the edit's effect on kappa shows
    assert met["items_moved"] > 0
    saved = yaml.safe_load(new_tax.read_text())
    assert saved["version"] == 2
    amb = next(c for c in saved["categories"] if c["id"] == "ambiguous")
    assert set(extra) <= set(amb["examples"]["positive"])
    assert rec["notes"]["taxonomy_before"] != rec["notes"]["taxonomy_after"]
    nb = json.loads(out.read_text())
    assert not any(o.get("output_type") == "error" for c in nb["cells"] for o in c.get("outputs", []))


def test_levers_in_two_cycles(lineage):
    """Lever 1 in every cycle; preference pairs, curated_dpo and the arena from the second cycle; 06's lineage."""
    first, second = (read_json(r.run_dir / "manifest.json")["metrics"]["05_evaluate"] for r in lineage[1])
    for m in (first, second):
        assert 0 <= m["pass_rate_retrieval_fewshot"] <= 1 and "false_refusal_rate_retrieval_fewshot" in m
        assert m["generate_seconds_per_item_retrieval_fewshot"] > 0
    assert "pass_rate_curated_dpo" not in first and "elo_curated" not in first and first["n_preference_pairs"] == 0
    a1, a2 = (r.run_dir / "artifacts" for r in lineage[1])
    s1, s2 = pd.read_parquet(a1 / "example_store.parquet"), pd.read_parquet(a2 / "example_store.parquet")
    pd.testing.assert_frame_equal(s2.iloc[:len(s1)], s1)          # appended, never edited
    assert set(s1["cycle"]) == {1} and set(s2["cycle"]) <= {1, 2}
    assert second["n_preference_pairs"] == len(pd.read_parquet(a2 / "preference_pairs.parquet"))
    if second["n_preference_pairs"]:  # smoke.yaml sets dpo: {pairs: all, min_pairs: 1}, so DPO runs on every pair
        assert second["n_dpo_pairs"] == second["n_preference_pairs"]
        assert 0 <= second["pass_rate_curated_dpo"] <= 1
        assert (a2 / "models" / "curated_dpo" / "adapter_config.json").exists()
        assert len((a2 / "preference_pairs.jsonl").read_text().splitlines()) == second["n_preference_pairs"]
    arena = pd.read_parquet(a2 / "arena.parquet")
    cand = read_json(lineage[1][1].run_dir / "manifest.json")["notes"]["05_evaluate"]["candidate_choice"]["chosen"]
    assert {"deployed_prev", cand} <= set(arena["model"])
    assert "retrieval_fewshot" not in set(arena["model"])  # decoded on the original eval only, not the drift slice
    battles = pd.read_parquet(a2 / "arena_battles.parquet")
    slices = {i.split(":", 1)[0] for i in battles["item_id"]}
    assert slices == {"original", "drift"}                  # held-out requests with true labels, never traffic
    assert not set(battles["item_id"].str.split(":", n=1).str[1]) & set(pd.read_parquet(a2 / "items.parquet")
                                                                           .query("split != 'eval'")["item_id"])
    assert second["elo_deployed_prev"] == pytest.approx(1000.0)   # the first rated cycle anchors the deployed model
    for mod in arena["model"]:
        assert second[f"elo_lo_{mod}"] <= second[f"elo_{mod}"] <= second[f"elo_hi_{mod}"]
    notes = read_json(lineage[1][1].run_dir / "manifest.json")["notes"]["06_flywheel"]
    assert notes["arena_verdict"].startswith("best model per cycle: cycle 2:")


def test_decision_heads_decide_in_every_stage_that_generates(lineage):
    """smoke.yaml sets head: {kind: hybrid}: 04 saves a head beside every adapter, 05 measures the candidate with
    and without it, and the deployed model's head goes with it into 06 and the next cycle."""
    from flywheel_lib.training.head import DecisionHead

    for r in lineage[1]:
        art = r.run_dir / "artifacts"
        m = read_json(r.run_dir / "manifest.json")
        first = r is lineage[1][0]  # a later cycle trains only the candidate (04's later_variants)
        for v in ("production_only", "naive_merge", "curated") if first else ("curated",):
            head = DecisionHead.load(art / "models" / v)
            assert head.n_fit_ > 0 and 0 <= m["metrics"]["04_finetune"][f"head_val_accuracy_{v}"] <= 1
            assert head.encoder == "hybrid" and (head.ngrams_ is not None) == (v != "production_only")
        if first:
            assert DecisionHead.load(art / "models" / "production_only").classes_ == ["solvable"]
        else:
            assert not (art / "models" / "production_only").exists()
            assert "naive_merge" in m["notes"]["04_finetune"]["later_cycle_variants"]
        ev = m["metrics"]["05_evaluate"]
        if r is lineage[1][0]:
            assert 0 <= ev["pass_rate_curated_nohead"] <= 1 and "false_refusal_rate_curated_nohead" in ev
            assert 0 <= ev["pass_rate_curated_free"] <= 1
        else:  # a later cycle skips both comparisons (compare_every_cycle: false)
            assert "pass_rate_curated_nohead" not in ev and "pass_rate_curated_free" not in ev
            assert m["notes"]["05_evaluate"]["comparisons"].startswith("skipped in a later cycle")
        assert set(m["notes"]["05_evaluate"]["decision_heads"]) >= (
            {"production_only", "naive_merge", "curated"} if first else {"curated", "deployed_prev"})
        preds = pd.read_parquet(art / "predictions.parquet")
        assert not preds.loc[preds["variant"] == "production_only", "refused"].any()  # its head never refuses


def test_a_later_cycle_is_scored_on_the_drift_slice(lineage):
    """Cycle 2's 05 scores the deployed model, the candidate and the store-consulting deployed model on held-out
    instances of cycle 1's traffic scenarios (no traffic row among them) and promotes by both slices; its 06 reports
    the patterns fixed and how the new scenarios entered the corpus."""
    from flywheel_lib.training.datasets import near_duplicate_key

    first, second = lineage[1]
    m1 = read_json(first.run_dir / "manifest.json")
    m2 = read_json(second.run_dir / "manifest.json")
    assert "pass_rate_curated_drift" not in m1["metrics"]["05_evaluate"]  # a first cycle has no drift slice
    ev = m2["metrics"]["05_evaluate"]
    choice = m2["notes"]["05_evaluate"]["candidate_choice"]  # curated or curated_continued, by the drift slice
    cand = choice["chosen"]
    assert cand in ("curated", "curated_continued") and choice["pass_rates"][cand] == max(choice["pass_rates"].values())
    for v in ("deployed_prev", cand, "deployed_store"):
        assert ev[f"pass_rate_{v}_drift_lo"] <= ev[f"pass_rate_{v}_drift"] <= ev[f"pass_rate_{v}_drift_hi"]
    for v in ("deployed_prev", cand):
        assert 0 <= ev[f"pass_rate_{v}_original"] <= 1
    assert ev["diff_drift_candidate_vs_deployed"] == pytest.approx(
        ev[f"pass_rate_{cand}_drift"] - ev["pass_rate_deployed_prev_drift"], abs=1e-3)
    assert 0 <= ev["p_drift_candidate_vs_deployed"] <= 1 and "diff_original_candidate_vs_deployed" in ev
    # the deployed model's answers to the original eval are those it gave as cycle 1's model: none decoded again
    assert ev["generations_reused"] >= ev["n_eval"] and ev["generations_decoded"] > 0
    assert m2["notes"]["05_evaluate"]["generation_memo"]["runs"] == [m1["run_id"]]
    p1 = pd.read_parquet(first.run_dir / "artifacts" / "predictions.parquet")
    p2 = pd.read_parquet(second.run_dir / "artifacts" / "predictions.parquet")
    deployed = m1["notes"]["05_evaluate"]["promotion"]["winner"]
    assert (p1.loc[p1["variant"] == deployed].sort_values("item_id")["output"].tolist()
            == p2.loc[p2["variant"] == "deployed_prev"].sort_values("item_id")["output"].tolist())
    drift = pd.read_parquet(second.run_dir / "artifacts" / "drift_items.parquet")
    traffic = pd.read_parquet(first.run_dir / "artifacts" / "traffic.parquet")
    assert len(drift) == 12 and set(drift["scenario_cycle"]) == {1}
    assert not set(map(near_duplicate_key, drift["text"])) & set(map(near_duplicate_key, traffic["text"]))
    promo = m2["notes"]["05_evaluate"]["promotion"]
    assert promo["rule"] == "drift slice better, original non-inferior" and "drift" in promo
    fw = m2["metrics"]["06_flywheel"]
    patterns = pd.read_parquet(second.run_dir / "artifacts" / "drift_patterns.parquet")
    assert fw["patterns_fixed"] == int((patterns["status"] == "fixed").sum())
    assert fw["new_scenarios_labelled_panel"] >= 0 and fw["new_scenarios_labelled_review"] >= 0


def test_a_third_cycle_compares_with_the_first_cycles_model(lineage):
    """Cycle 3 scores the lineage's first deployed model on the drift slice of cycles 1-2 and records what the loop
    gained since; its baseline is whatever cycle 2 deployed (followed through the lineage when cycle 2 kept it)."""
    third = lineage[3]
    assert [r.status for r in third] == ["succeeded"], [r.failure for r in third]
    m = read_json(third[0].run_dir / "manifest.json")
    ev = m["metrics"]["05_evaluate"]
    assert -1 <= ev["diff_drift_vs_first_cycle"] <= 1 and 0 <= ev["p_drift_vs_first_cycle"] <= 1
    drift = pd.read_parquet(third[0].run_dir / "artifacts" / "drift_items.parquet")
    assert set(drift["scenario_cycle"]) == {1, 2} and len(drift) == 24
    preds = pd.read_parquet(third[0].run_dir / "artifacts" / "drift_predictions.parquet")
    assert {"deployed_prev", "curated", "first_cycle", "deployed_store"} <= set(preds["variant"])
    assert m["parent"]["cycle"] == 3


def test_a_capability_change_relabels_the_corpus_in_a_later_cycle(lineage):
    """Cycle 2 learnt refusals of shoe-size requests from cycle 1's traffic; the product supports shoe sizes from
    cycle 2's traffic on, so cycle 3's 03 takes those refusals out of the curated corpus and the simulated reviewer
    relabels them answerable with their query; the naive merge keeps them; cycle 3's drift slice scores the requests
    as answerable."""
    second, third = lineage[1][1], lineage[3][0]
    art2, art3 = second.run_dir / "artifacts", third.run_dir / "artifacts"
    truth2 = pd.read_parquet(art2 / "truth.parquet")
    shoe_ids = set(truth2.loc[truth2["scenario_id"] == "missing_capability:shoe_size", "item_id"])
    ts2, ts3 = pd.read_parquet(art2 / "train_sets.parquet"), pd.read_parquet(art3 / "train_sets.parquet")
    stale2 = ts2[(ts2["variant"] == "curated") & ts2["item_id"].isin(shoe_ids)
                 & (ts2["label"] == "missing_capability")]
    assert len(stale2) > 0, "cycle 2's corpus learnt no shoe-size refusal: nothing for cycle 3 to relabel"
    m2 = read_json(second.run_dir / "manifest.json")["metrics"]["03_resolve"]
    assert m2["capability_stale_found"] == 0  # no change was in effect in the traffic cycle 2 judged
    m3 = read_json(third.run_dir / "manifest.json")["metrics"]["03_resolve"]
    assert m3["capability_stale_found"] >= len(stale2)
    cur3 = ts3[(ts3["variant"] == "curated") & ts3["item_id"].isin(stale2["item_id"])]
    relabelled = cur3[cur3["label"] == "solvable"]
    assert len(relabelled) >= 0.8 * len(stale2) and relabelled["output"].str.contains("shoe-size-").all()
    assert m3["capability_relabelled"] >= len(relabelled)
    naive2 = ts2[(ts2["variant"] == "naive_merge") & ts2["item_id"].isin(stale2["item_id"])]
    naive3 = ts3[(ts3["variant"] == "naive_merge") & ts3["item_id"].isin(stale2["item_id"])]
    assert sorted(naive3["label"]) == sorted(naive2["label"])  # the baseline does not curate
    drift = pd.read_parquet(art3 / "drift_items.parquet")
    shoe = drift[drift["scenario_id"] == "missing_capability:shoe_size"]
    assert len(shoe) and set(shoe["label"]) == {"solvable"}


TIMED = ("seconds", "tokens_per_s")


def _replay(run_dir, stage: str, tmp_path, artifacts: tuple[str, ...], **overrides):
    """A copy of a run the notebooks made, with the stage's record and ``artifacts`` removed, replayed by the
    stage's library steps without Jupyter, in a script of its own (a fresh Python process, as a user's script
    would run them). Returns (the notebook's metrics, the replay's, the copy)."""
    import shutil
    import subprocess
    import sys

    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    (copy / "metrics" / f"{stage}.json").unlink()
    for name in artifacts:
        (copy / "artifacts" / f"{name}.parquet").unlink()
    params = {**read_json(run_dir / "manifest.json")["params_in_effect"][stage], **overrides}
    script = "import json, sys\nfrom flywheel_lib.stages import run_stage\n" \
             "run_stage(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))"
    done = subprocess.run([sys.executable, "-c", script, stage, str(copy), json.dumps(params)],
                          capture_output=True, text=True)
    assert done.returncode == 0, f"{stage} replay failed:\n{done.stderr[-4000:]}"
    before = read_json(run_dir / "metrics" / f"{stage}.json")["metrics"]
    after = read_json(copy / "metrics" / f"{stage}.json")["metrics"]
    return before, after, copy


@pytest.mark.parametrize("stage, artifacts", [
    ("00_data", ("items", "truth")),
    ("03_resolve", ("consensus", "resolutions", "train_sets")),
    ("06_flywheel", ("traffic", "traffic_truth")),
])
def test_library_steps_without_jupyter_reproduce_a_later_cycles_stage(lineage, tmp_path, stage, artifacts):
    """The notebooks are reports over library steps: the steps alone, run as a script would, write the same
    metrics and artifacts as the executed notebook (cycle 2: parent corpus, traffic sampling, lineage)."""
    second = lineage[1][1]
    before, after, copy = _replay(second.run_dir, stage, tmp_path, artifacts)
    assert after, f"{stage}: the replay recorded no metric"
    same = {k: v for k, v in before.items() if not any(t in k for t in TIMED)}
    assert {k: after.get(k) for k in same} == same
    for name in artifacts:
        pd.testing.assert_frame_equal(pd.read_parquet(copy / "artifacts" / f"{name}.parquet"),
                                      pd.read_parquet(second.run_dir / "artifacts" / f"{name}.parquet"))


def test_evaluation_steps_without_jupyter_score_as_the_notebook(lineage, tmp_path):
    """05's steps alone, without the once-per-lineage decoder and head comparisons and lever 1, score every variant
    as the executed notebook did and take the same promotion decision."""
    first = lineage[1][0]
    before, after, copy = _replay(first.run_dir, "05_evaluate", tmp_path, ("predictions", "eval_metrics"),
                                  comparisons={"decoders": False, "heads": False}, retrieval={"k": 0})
    scored = [k for k in after if k.startswith(("pass_rate_", "refusal_accuracy_", "false_refusal_rate_"))]
    assert {"pass_rate_curated", "pass_rate_naive_merge", "pass_rate_production_only"} <= set(scored)
    assert not any(k.endswith(("_free", "_nohead", "_retrieval_fewshot")) for k in after)
    assert {k: after[k] for k in scored} == {k: before[k] for k in scored}
    assert after["promoted"] == before["promoted"]
    for m in ("pass_rate", "refusal_recall", "false_refusal_rate"):  # the index's headline, with its interval
        assert after[f"{m}_curated_lo"] <= after[f"{m}_curated"] <= after[f"{m}_curated_hi"]
    notes = read_json(copy / "metrics" / "05_evaluate.json")["notes"]
    assert notes["promotion"] == read_json(first.run_dir / "metrics" / "05_evaluate.json")["notes"]["promotion"]
