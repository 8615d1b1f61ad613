"""03_resolve's review steps: the queue with its audit sample, several reviewers, the simulated reviewer, the audit's
estimate of the gate's precision, and the stale refusals of a capability the product now supports."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from flywheel_lib.stages.resolve import Resolution

__all__ = ["review_queue", "ReviewAgreement", "several_reviewers", "SimulatedReview", "simulated_review",
           "Audit", "audit", "relabel_stale_refusals"]


def _r4(x) -> float | None:
    return None if x is None or pd.isna(x) else round(float(x), 4)


def review_queue(r: Resolution) -> dict:
    """The review queue (opted-out items and contested keeps, most useful first) under the audit sample (accepted
    labels drawn at random, sized by ``audit_half_width``/``audit_max`` or forced by ``audit_n``), exported as CSV
    and Label Studio tasks. Returns the exported paths."""
    from flywheel_lib.curation.audit import audit_size, draw_audit
    from flywheel_lib.curation.review import export_review, with_audit
    from flywheel_lib.curation.review import review_queue as make_queue

    st, cfg = r.st, r.cfg
    r.queue = queue = make_queue(r.resolutions, r.items, verdicts=r.panel_verdicts, taxonomy=r.tax)
    r.accepted = accepted = r.consensus.loc[r.consensus["status"] == "accepted", ["item_id", "category"]]
    # the seed's out-of-fold precision of the gate this run uses (01_calibrate's choice), the audit's planning value
    oof = ((r.panel.get("gate") or {}).get("choice") or {}) if r.gate_note.get("source") == "01_calibrate" else {}
    r.oof_precision = oof.get("precision")
    if cfg.audit.n > 0:
        n_audit = min(cfg.audit.n, len(accepted))
    elif cfg.audit.max > 0:
        n_audit = audit_size(len(accepted), half_width=cfg.audit.half_width, max_n=cfg.audit.max,
                             expected=r.oof_precision)
    else:
        n_audit = 0
    r.audit_sample = draw_audit(accepted, n_audit, seed=cfg.seed)
    st.write("audit_sample", r.audit_sample)
    r.review_file = with_audit(queue, r.audit_sample, r.items)
    r.review_paths = paths = export_review(r.review_file, st.path("review_queue.csv"), taxonomy=r.tax,
                                           label_studio_path=st.path("review_queue.label_studio.json"))
    st.metric("review_queue_size", int(len(r.review_file)), headline=True)
    st.metric("review_queue_audit", int(r.review_file["audit"].sum()))
    st.metric("review_queue_conflicts", int((queue["priority"] == 0).sum()))
    st.metric("review_budget", int(cfg.review.budget))
    print({k: p.name for k, p in paths.items()})
    sized = "forced by audit.n" if cfg.audit.n > 0 else f"half-width target {cfg.audit.half_width}, cap {cfg.audit.max}"
    print(f"audit sample: {len(r.audit_sample)} of {len(accepted):,} accepted labels ({sized})")
    return paths


@dataclass
class ReviewAgreement:
    """Several reviewers: who got which items, their agreement (kappa per pair, Krippendorff's alpha, Fleiss'
    kappa, with intervals), and the items they left unsettled (requeued)."""

    assignment: pd.DataFrame | None
    agreement: dict
    requeue: pd.DataFrame

    @property
    def several(self) -> bool:
        return bool(self.agreement)


def several_reviewers(r: Resolution) -> ReviewAgreement:
    """With ``reviewers_per_item`` above 1 (or ``reviewers`` named) one review file per reviewer; with their answers
    imported, agreement and the requeue file (``review_requeue.csv``)."""
    from flywheel_lib.curation.review import export_review
    from flywheel_lib.curation.reviewers import agreement, assign_reviewers, export_assigned, requeue_file

    st, cfg = r.st, r.cfg
    assignment = None
    if cfg.review.per_item > 1 or cfg.review.reviewers:  # one file per reviewer, each item to review.per_item of them
        assignment = assign_reviewers(r.review_file, cfg.review.reviewers, k=cfg.review.per_item, seed=cfg.seed)
        st.write("review_assignments", assignment)
        export_assigned(r.review_file, assignment, r.review_paths["csv"].parent, taxonomy=r.tax)
    several = bool(cfg.review_import) and r.answers is not None and r.answers["reviewer"].nunique() > 1
    ag = agreement(r.answers, seed=cfg.seed).as_dict() if several else {}
    requeue = requeue_file(r.aggregator, r.review_file, r.items) if cfg.review_import else r.review_file.iloc[:0]
    export_review(requeue, st.path("review_requeue.csv"), taxonomy=r.tax)
    for key in ("alpha", "alpha_lo", "alpha_hi", "kappa_fleiss", "kappa_fleiss_lo", "kappa_fleiss_hi"):
        st.metric(f"review_{key}", None if ag.get(key) is None else round(ag[key], 4), headline=key == "alpha")
    st.metric("review_requeued", int(len(requeue)), headline=several)
    st.metric("review_pending", int((r.aggregator.status_ == "pending").sum()) if cfg.review_import else 0)
    st.note("review_agreement", {"resolution": cfg.review.resolution, "reviewers_per_item": cfg.review.per_item,
                                 **ag} if several else None)
    if several:
        f3 = {k: "n/a" if v is None else f"{v:.3f}" for k, v in ag.items() if k.startswith(("alpha", "kappa"))}
        assert r.answers is not None
        print(f"{r.answers['reviewer'].nunique()} reviewers, {ag['n_items']} items with two or more answers: "
              f"Krippendorff's alpha {f3['alpha']} [{f3['alpha_lo']}, {f3['alpha_hi']}], Fleiss' kappa "
              f"{f3['kappa_fleiss']} [{f3['kappa_fleiss_lo']}, {f3['kappa_fleiss_hi']}] on {ag['fleiss_items']} "
              f"items; {cfg.review.resolution}: {0 if r.reviewed is None else len(r.reviewed)} resolved, {len(requeue)} requeued to "
              "review_requeue.csv")
    return ReviewAgreement(assignment, ag, requeue)


@dataclass
class SimulatedReview:
    """The curated set before and after the simulated reviewer's answers, and what the answered queue items
    changed (labels fixed, per item)."""

    sets: pd.DataFrame
    effect: dict


def simulated_review(r: Resolution) -> SimulatedReview | None:
    """Only with a simulated reviewer: it answers the first ``review_budget`` queue items and every audit item from
    the truth table (wrong at ``reviewer_error_rate``); its file comes back through the import path and the tree
    runs again (``resolutions`` rewritten). With people nothing is answered (and no earlier simulation's figures
    are kept); returns None."""
    from flywheel_lib.curation.diagnostics import resolution_summary
    from flywheel_lib.curation.resolve import resolve
    from flywheel_lib.curation.review import export_review, import_review
    from flywheel_lib.curation.reviewer import review_effect, simulate_review

    st, cfg, tax, rf = r.st, r.cfg, r.tax, r.review_file
    if not r.who.simulated:  # people: a re-run in the same folder keeps no earlier simulation's figures
        for key in ("review_labels_fixed_simulated", "review_fixed_per_item_simulated"):
            st.metric(key, None)
        st.note("simulated_review", None)
        if r.reviewed is not None:
            print(f"review_source people: {len(r.reviewed)} answers imported from {cfg.review_import} "
                  f"({int(r.reviewed['audit'].sum())} of them audit items); no simulated reviewer")
        else:
            print(f"review_source people: no simulated reviewer. {r.review_paths['csv'].name} (or the Label Studio "
                  f"tasks) waits for people: {int(rf['audit'].sum())} audit items and {len(r.queue)} queue items; "
                  "re-run with review_import pointing at the filled file")
        return None
    truth = r.truth_labels
    in_queue = rf[rf["priority"] >= 0]
    answered = simulate_review(in_queue, truth, budget=cfg.review.budget, taxonomy=tax,
                               error_rate=cfg.review.simulated_error_rate, seed=cfg.seed)
    audit_left = rf[(rf["audit"] == 1) & ~rf["item_id"].isin(answered["item_id"])]
    answered = pd.concat([answered, simulate_review(audit_left, truth, budget=len(audit_left), taxonomy=tax,
                                                    error_rate=cfg.review.simulated_error_rate, seed=cfg.seed + 1)],
                         ignore_index=True)
    sim_path = export_review(answered, st.path("review_simulated.csv"), taxonomy=tax)["csv"]
    r.reviewed = reviewed = import_review(sim_path, taxonomy=tax)
    before = r.resolutions
    r.resolutions = resolve(r.items, r.consensus, tax, conflicts=r.conflicts, reviewed=reviewed,
                            output_valid=r.valid, gate_scope=cfg.gate_scope, contradiction=cfg.contradiction)
    st.write("resolutions", r.resolutions, contract="resolutions")
    budget_ids = answered.loc[answered["item_id"].isin(in_queue["item_id"].head(cfg.review.budget)), "item_id"]
    effect = review_effect(before, r.resolutions, truth, budget_ids)
    sets = pd.DataFrame({"before review": resolution_summary(before, truth),
                         "after simulated review": resolution_summary(r.resolutions, truth)})
    st.note("simulated_review", {"review_source": "simulated", "budget": cfg.review.budget,
                                 "error_rate": cfg.review.simulated_error_rate,
                                 "audit_items_answered": int(reviewed["audit"].sum()), **effect,
                                 "curated_set": sets.astype(object).where(sets.notna(), None).to_dict()})
    st.metric("review_labels_fixed_simulated", effect["fixed"], headline=True)
    st.metric("review_fixed_per_item_simulated", effect["fixed_per_item"])
    print(f"simulated reviewer (not people): {len(budget_ids)} queue items and {int(reviewed['audit'].sum())} "
          f"audit items answered from the truth table, wrong at {cfg.review.simulated_error_rate}")
    return SimulatedReview(sets, effect)


@dataclass
class Audit:
    """The gate's precision on production three ways (audit estimate, the seed's out-of-fold figure, the truth),
    and the audit's strata."""

    figures: pd.DataFrame
    strata: pd.DataFrame
    summary: str


def audit(r: Resolution) -> Audit:
    """The audit estimate from the review source's blind answers on the audit sample (stratified, Wilson interval),
    beside the seed's out-of-fold precision and, with a truth, the true production precision."""
    from flywheel_lib.curation.audit import audit_precision

    st, cfg, who, reviewed, accepted = r.st, r.cfg, r.who, r.reviewed, r.accepted
    answers = (reviewed[reviewed["audit"].astype(bool)] if reviewed is not None and "audit" in reviewed.columns
               else pd.DataFrame(columns=["item_id", "human_label"]))
    est = audit_precision(accepted, answers)
    by = "simulated reviewer" if who.simulated else "people"
    st.metric("audit_source", who.source)
    st.metric("audit_n", int(est.n), headline=True)
    st.metric("audit_precision", _r4(est.precision), headline=True)
    st.metric("audit_precision_lo", _r4(est.lo))
    st.metric("audit_precision_hi", _r4(est.hi))
    st.note("audit", {"review_source": who.source, "sample_size": int(len(r.audit_sample)),
                      "half_width": cfg.audit.half_width, "max": cfg.audit.max, "forced_n": cfg.audit.n,
                      **est.as_dict(),
                      "strata": est.strata.astype(object).where(est.strata.notna(), None).to_dict("records")})
    true_prec = None
    if r.truth_labels is not None and len(accepted):
        t = r.truth_labels.drop_duplicates("item_id").set_index("item_id")["true_label"]
        true_prec = float((accepted["category"].to_numpy() == t.reindex(accepted["item_id"]).to_numpy()).mean())
    figures = pd.DataFrame([
        {"figure": f"audit estimate (production, {by})", "precision": est.precision, "lo_95": est.lo,
         "hi_95": est.hi, "n": est.n},
        {"figure": "seed, out of fold (01_calibrate)", "precision": r.oof_precision, "lo_95": None, "hi_95": None,
         "n": None},
        {"figure": "true production precision (hidden truth)", "precision": true_prec, "lo_95": None, "hi_95": None,
         "n": len(accepted) if true_prec is not None else None},
    ]).set_index("figure")
    if est.n:
        oof = "n/a" if r.oof_precision is None else f"{r.oof_precision:.3f}"
        summary = (f"audit ({by}): {est.precision:.3f} [{est.lo:.3f}, {est.hi:.3f}] from {est.n} reviewed of "
                   f"{est.n_accepted:,} accepted labels; the seed's out-of-fold figure is {oof} (annotated seed, not "
                   "production)" + ("" if true_prec is None else f"; true production precision {true_prec:.3f}"))
    else:
        summary = (f"no audit answers yet: {int(r.review_file['audit'].sum())} audit rows (audit = 1) in "
                   f"{r.review_paths['csv'].name} wait for people; re-run with review_import once they are filled in")
    return Audit(figures.astype(float).round(4), est.strata.round(4), summary)


def relabel_stale_refusals(r: Resolution, sets: pd.DataFrame) -> pd.DataFrame:
    """A later cycle: the curated sets' refusals of a capability the drift schedule says the product now supports,
    relabelled by the simulated reviewer or left waiting in ``review_stale.csv`` for people (and out of training)."""
    from flywheel_lib.curation.review import export_review
    from flywheel_lib.curation.stale import relabel_for_stage

    st, cfg = r.st, r.cfg
    sets, stale, changes = relabel_for_stage(st, sets, schedule=cfg.drift_schedule, taxonomy=r.tax,
                                             simulated=r.who.simulated, reviewed=r.reviewed,
                                             error_rate=cfg.review.simulated_error_rate, seed=cfg.seed)
    st.metric("capability_stale_found", stale.found)
    st.metric("capability_relabelled", stale.relabelled, headline=stale.found > 0)
    st.metric("capability_waiting", stale.waiting)
    st.note("capability_changes", {"in_effect": changes["key"].tolist(), **stale.as_dict()})
    if stale.waiting:
        export_review(stale.waiting_rows[["item_id", "text", "label", "output"]].assign(
            reason="capability_change", human_label="", human_output=""), st.path("review_stale.csv"), taxonomy=r.tax)
    if len(changes):
        print(f"capability changes in effect: {changes['key'].tolist()}; {stale.found} stale refusal rows, "
              f"{stale.relabelled} items relabelled, {stale.waiting} waiting for review (review_stale.csv)")
    return sets


def run(st, cfg) -> Resolution:
    """Every step of 03_resolve in the notebook's order, without Jupyter (no figures)."""
    from flywheel_lib.stages import resolve as steps

    r = steps.open_resolution(st, cfg)
    for step in (steps.start_executor, steps.decide_reviewer, steps.consensus_gate, steps.find_seed_conflicts,
                 steps.decision_tree, review_queue, several_reviewers, simulated_review, audit, steps.training_sets,
                 steps.selection_bias, steps.stage_warnings):
        step(r)
    return r
