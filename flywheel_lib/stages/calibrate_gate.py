"""01_calibrate's gate steps: the reasoning check and strategy the gate uses, the comparison with the baseline, the
panel record for the later stages, the anchoring probe, and this cycle's drift sample."""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from typing import Any

import pandas as pd

from flywheel_lib.stages.calibrate import Calibration, say_warnings

__all__ = ["GateChoice", "choose_gate", "versus_baseline", "write_panel", "anchoring", "drift_sample"]


@dataclass
class GateChoice:
    """The unanimous gate under each reasoning check, the chosen check, the ladder of strategies and the chosen
    one, every strategy's precision against coverage, and the warnings the choice raised."""

    checks: pd.DataFrame
    reasoning: dict
    ladder: pd.DataFrame
    choice: dict
    comparison: pd.DataFrame
    unanimous_detail: pd.Series
    warnings: list[str]


def choose_gate(c: Calibration) -> GateChoice:
    """On the out-of-fold verdicts of the kept judges: which reasoning check fits (``reasoning_checks``), then every
    strategy's precision and coverage (``strategy_comparison``) and the gate's strategy: the seed's rule, or the
    strictest that meets ``target_precision``. Gate warnings are loud."""
    from flywheel_lib.curation import DawidSkene, KOfN, MajorityVote, Unanimous, precision_coverage
    from flywheel_lib.curation import gate as gates

    st, cfg, tax, gold, kept = c.st, c.cfg, c.tax, c.gold, c.kept
    v_kept = c.verdicts[c.verdicts["judge"].isin(kept)]
    checks = gates.reasoning_checks(v_kept, gold, judges=kept, labels=tax.ids,
                                    rationale_similarity=cfg.rationale_similarity)
    st.write("reasoning_checks", checks)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", gates.GateWarning)
        reasoning = gates.choose_reasoning(checks, has_reasons=gates.seed_has_reasons(c.seed_items))
        ladder = gates.ladder_table(v_kept, gold, judges=kept, labels=tax.ids, reasoning=reasoning["reasoning"],
                                    rationale_similarity=cfg.rationale_similarity)
        choice = gates.choose_strategy(ladder, target_precision=cfg.target_precision,
                                       min_coverage=cfg.gate_min_coverage)
    raised = [str(w.message) for w in caught]
    say_warnings(raised)
    st.note("gate_warnings", raised)
    st.note("gate_reasoning", reasoning)
    st.note("gate_choice", choice)
    print(f"reasoning check: {reasoning['reasoning']} ({reasoning['why']})")
    print(f"gate strategy: {choice['strategy']} ({choice['why']})")
    k = cfg.k_of_n or max(len(kept) - 1, 1)
    strategies: dict[str, Any] = {
        "unanimous": Unanimous(rationale_similarity=cfg.rationale_similarity, reasoning=reasoning["reasoning"],
                               labels=tax.ids),
        "unanimous_category_only": KOfN(k=len(kept), labels=tax.ids),
        f"k_of_n_{k}": KOfN(k=k, labels=tax.ids),
        "majority": MajorityVote(labels=tax.ids),
        "dawid_skene": DawidSkene(labels=tax.ids),
    }
    for s in strategies.values():
        s.fit(v_kept)
    for j in kept:  # each single judge, as the 'confidence' baseline
        strategies[f"judge:{j}"] = KOfN(k=1, labels=tax.ids).fit(v_kept[v_kept["judge"] == j])
    comparison = precision_coverage(strategies, gold)
    st.write("strategy_comparison", comparison)
    for r in comparison.itertuples():
        if not r.strategy.startswith("judge:"):
            prec = None if pd.isna(r.precision) else round(float(r.precision), 4)  # None: nothing accepted
            st.metric(f"holdout_precision_{r.strategy}", prec, headline=r.strategy == "unanimous")
            st.metric(f"holdout_coverage_{r.strategy}", round(float(r.coverage), 4), headline=r.strategy == "unanimous")
    st.metric("gate_precision", choice["precision"], headline=True)
    st.metric("gate_coverage", round(choice["coverage"], 4), headline=True)
    c.gate = GateChoice(checks, reasoning, ladder, choice, comparison, strategies["unanimous"].detail_, raised)
    return c.gate


def versus_baseline(c: Calibration):
    """The gate's out-of-fold precision at its coverage against the baseline's at the same coverage
    (``panel_beats_baseline``), and the best judge's kappa against the baseline's; a panel that does not beat it
    is a warning. Records the stage's warnings (note ``warnings``)."""
    from flywheel_lib.curation import calibration as cal

    st = c.st
    vs = cal.compare_with_baseline(c.report[~c.report["judge"].isin(c.baseline_in_panel)], c.baseline_verdicts,
                                   c.gold, c.gate.choice, labels=c.tax.ids)
    st.metric("panel_beats_baseline", vs.panel_beats_baseline, headline=True)
    st.metric("best_judge_beats_baseline", vs.best_judge_beats_baseline)
    st.metric("baseline_precision_at_gate_coverage",
              None if vs.baseline_precision is None else round(vs.baseline_precision, 4))
    st.note("baseline", vs.as_dict())
    print(vs.sentence())
    c.warnings += c.gate.warnings  # the gate's own warnings (e.g. it accepts nothing)
    if not vs.panel_beats_baseline:
        print(vs.sentence(), file=sys.stderr)
        c.warnings.append(vs.sentence().removeprefix("WARNING: "))
    st.note("warnings", c.warnings)
    return vs


def write_panel(c: Calibration, confusions: dict[str, pd.DataFrame]) -> dict:
    """``panel.json``: the judges kept after the gate, each judge's confusion matrix (Dawid-Skene in 03 may start
    from them), the effective votes, Fleiss' kappa, the folds, and the gate's reasoning check and strategy."""
    from flywheel_lib.curation import calibration as cal
    from flywheel_lib.curation import gate as gates

    cfg, g = c.cfg, c.gate
    record = cal.panel_record(c.report, confusions, kappa_threshold=cfg.kappa_threshold,
                              exclude=cfg.exclude_below_threshold, panel=cfg.panel, taxonomy=c.tax.version_id,
                              min_kappa=cfg.min_kappa)
    record["effective_votes"] = c.effective_votes
    fleiss = c.agreement["fleiss_kappa"]
    record["fleiss_kappa"] = None if pd.isna(fleiss) else fleiss
    record["cv_folds"] = cfg.cv_folds
    record["gate"] = gates.gate_record(g.reasoning, g.choice, g.ladder, g.checks)
    path = c.st.write_json("panel", record)
    c.st.metric("panel_size_kept", len(record["judges"]), headline=True)
    print(path.name, record["judges"], "excluded:", record["excluded"])
    return record


def anchoring(c: Calibration) -> pd.DataFrame | None:
    """Each LLM judge re-judges ``anchoring_n`` hold-out items with a claimed production label in the prompt: the
    flip rate to the claim (``anchoring_flip_rate_<judge>``); offline judges are reported as not applying. None
    when skipped."""
    from flywheel_lib.monitoring.probes import anchoring_probe

    st, cfg = c.st, c.cfg
    if not (cfg.anchoring_n > 0 and len(c.holdout)):
        print("anchoring probe skipped (anchoring_n = 0)")
        return None
    probe, _ = anchoring_probe(c.panel, c.holdout, c.verdicts, labels=c.tax.ids, n=cfg.anchoring_n, seed=cfg.seed,
                               cache_dir=cfg.cache_dir)
    st.write("anchoring_probe", probe)
    for r in probe.itertuples():
        st.metric(f"anchoring_flip_rate_{r.judge}", round(float(r.flip_rate), 4) if r.applies else None)
    st.note("anchoring_probe", {r.judge: (f"flip rate {r.flip_rate:.3f} [{r.flip_lo:.3f}, {r.flip_hi:.3f}], "
                                          f"n={int(r.n)}" if r.applies else r.note) for r in probe.itertuples()})
    st.note("position_bias", "does not apply: no judge in this panel compares two answers")
    return probe


def drift_sample(c: Calibration) -> pd.DataFrame:
    """This cycle's kappa per judge on a slice of the hold-out it has not used before (``kappa_<judge>_cycle`` with
    its interval): what 06 plots across the lineage and raises the drift alarm on."""
    from flywheel_lib.flywheel import lineage_chain
    from flywheel_lib.monitoring.drift import fresh_slice, slice_kappa

    st, cfg, gold = c.st, c.cfg, c.gold
    cycle = len(lineage_chain(st.run_dir))
    in_slice = fresh_slice(gold.index, cycle=cycle, n_slices=cfg.drift_slices, seed=cfg.seed)
    now = slice_kappa(c.verdicts, gold[in_slice], labels=c.tax.ids)
    for r in now.itertuples():
        for suffix, val in (("", r.kappa), ("_lo", r.kappa_lo), ("_hi", r.kappa_hi)):
            st.metric(f"kappa_{r.judge}_cycle{suffix}", None if pd.isna(val) else round(float(val), 4))
    st.note("drift_sample", {"cycle": cycle, "slice": (cycle - 1) % cfg.drift_slices, "of": cfg.drift_slices,
                             "n": int(in_slice.sum()), "source": "seed hold-out"})
    return now


def run(st, cfg) -> Calibration:
    """Every step of 01_calibrate in the notebook's order, without Jupyter (no figures)."""
    from flywheel_lib.stages import calibrate as steps

    c = steps.open_calibration(st, cfg)
    for step in (steps.split_seed, steps.judge_out_of_fold, steps.score_judges, steps.baseline):
        step(c)
    confusions = steps.confusions(c)
    for step in (steps.panel_agreement, steps.confused_pairs, choose_gate, versus_baseline):
        step(c)
    write_panel(c, confusions)
    anchoring(c)
    drift_sample(c)
    return c
