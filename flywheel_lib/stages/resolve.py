"""03_resolve: the consensus gate, conflicts with the seed, the decision tree, and the training sets.

The steps, in the notebook's order: :func:`open_resolution` (the verdicts of the judges the calibration kept),
:func:`decide_reviewer` (people or a simulated reviewer), :func:`consensus_gate`, :func:`find_seed_conflicts`,
:func:`decision_tree` (every gate policy on the same verdicts; this run keeps its own), then the review steps of
:mod:`flywheel_lib.stages.resolve_review` (queue, audit, several reviewers, simulated reviewer), and
:func:`training_sets`, :func:`selection_bias` and :func:`stage_warnings`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from flywheel_lib.stages import StageConfig
from flywheel_lib.stages.groups import AuditParams, ReviewParams


@dataclass(frozen=True)
class ResolveConfig(StageConfig):
    """03_resolve's parameters (their help: the notebook's parameters cell)."""

    seed: int
    domain: str
    taxonomy: str
    strategy: str
    k_of_n: int
    min_posterior: float
    rationale_similarity: float
    similarity_threshold: float
    conflict_prefilter: float
    gate_scope: str
    contradiction: str
    train_policies: list
    check_outputs: bool
    review_import: str
    drift_schedule: str
    review: ReviewParams
    audit: AuditParams
    min_share_ratio: float
    executor: str
    ray_address: str

    @property
    def policy(self) -> str:
        """The gate policy this run keeps: ``all`` or ``changes/<contradiction>``."""
        return "all" if self.gate_scope == "all" else f"changes/{self.contradiction}"


@dataclass
class Resolution:
    """What 03's steps share: the stage, its inputs, and each step's result (filled in as the steps run)."""

    st: Any
    cfg: ResolveConfig
    tax: Any
    dom: Any
    items: pd.DataFrame
    verdicts: pd.DataFrame
    panel: dict
    calibration: pd.DataFrame
    hidden: pd.DataFrame
    who: Any = None
    panel_verdicts: pd.DataFrame = field(default_factory=pd.DataFrame)
    gate_note: dict = field(default_factory=dict)
    consensus: pd.DataFrame = field(default_factory=pd.DataFrame)
    conflicts: pd.DataFrame = field(default_factory=pd.DataFrame)
    valid: pd.Series | None = None
    answers: pd.DataFrame | None = None
    aggregator: Any = None
    reviewed: pd.DataFrame | None = None
    scopes: pd.DataFrame = field(default_factory=pd.DataFrame)
    resolutions: pd.DataFrame = field(default_factory=pd.DataFrame)
    queue: pd.DataFrame = field(default_factory=pd.DataFrame)
    review_file: pd.DataFrame = field(default_factory=pd.DataFrame)
    review_paths: dict = field(default_factory=dict)
    accepted: pd.DataFrame = field(default_factory=pd.DataFrame)
    audit_sample: pd.DataFrame = field(default_factory=pd.DataFrame)
    oof_precision: float | None = None
    train_sets: pd.DataFrame = field(default_factory=pd.DataFrame)
    bias: Any = None

    @property
    def kept(self) -> list[str]:
        """The judges the calibration kept: only they vote."""
        return self.panel["judges"]

    @property
    def truth_labels(self) -> pd.DataFrame | None:
        """The hidden truth (``item_id, true_label, ...``) where the data has one (a simulator's)."""
        return self.hidden if "true_label" in self.hidden.columns else None


def open_resolution(st, cfg: ResolveConfig) -> Resolution:
    """The items, the verdicts, the calibrated panel (``panel.json``) and the hidden truth where there is one; notes
    ``taxonomy`` and ``panel_judges``. A domain without a plug-in still resolves (its outputs go unchecked)."""
    from flywheel_lib import load_taxonomy
    from flywheel_lib.domains import get_domain

    tax = load_taxonomy(cfg.taxonomy)
    try:
        dom = get_domain(cfg.domain)
    except Exception as e:  # noqa: BLE001 - a domain without a plug-in still resolves; the reason is printed
        print(f"domain {cfg.domain!r} unavailable: {e}")
        dom = None
    r = Resolution(st, cfg, tax, dom, items=st.read("items", contract="items"),
                   verdicts=st.read("verdicts", contract="verdicts"), panel=st.read_json("panel"),
                   calibration=st.read("calibration"),
                   hidden=st.read("truth") if st.exists("truth") else pd.DataFrame(columns=["item_id"]))
    st.note("taxonomy", tax.version_id)
    st.note("panel_judges", r.kept)
    print(f"{len(r.items):,} items; {r.verdicts['item_id'].nunique():,} judged by "
          f"{sorted(r.verdicts['judge'].unique())}; kept: {r.kept}")
    return r


def start_executor(r: Resolution) -> dict:
    """Where the bulk work runs (``local``, or Ray Data at ``ray_address``): note ``executor``."""
    from flywheel_lib.executors import use_executor

    info = vars(use_executor(r.cfg.executor, ray_address=r.cfg.ray_address))
    r.st.note("executor", info)
    return info


def decide_reviewer(r: Resolution):
    """Who answers the review queue and the audit (people, or a simulated reviewer reading the truth table):
    note and metric ``review_source``."""
    from flywheel_lib.curation.review import decide_review_source

    data_params = (r.st.view().manifest.get("params_in_effect") or {}).get("00_data") or {}
    r.who = who = decide_review_source(r.cfg.review.source, source_kind=data_params.get("source_kind"),
                                       has_truth="true_label" in r.hidden.columns,
                                       review_import=bool(r.cfg.review_import))
    r.st.note("review_source", {"decided": who.source, "requested": who.requested, "why": who.why})
    r.st.metric("review_source", who.source, headline=True)
    print(f"review_source: {who.source} ({who.why})")
    return who


def consensus_gate(r: Resolution) -> pd.DataFrame:
    """The kept judges' verdicts aggregated by the recipe's strategy (else 01's choice), with its reasoning check:
    writes ``consensus``; records coverage, counts per status and, with a truth, the accepted labels' precision."""
    from flywheel_lib.curation.gate import gate_for_resolve

    st, cfg = r.st, r.cfg
    in_panel = r.verdicts["judge"].isin(r.kept)
    r.panel_verdicts = r.verdicts if in_panel.all() else r.verdicts[in_panel]  # no copy when every judge is kept
    gate, r.gate_note = gate_for_resolve(r.panel, strategy=cfg.strategy, judges=r.kept, labels=r.tax.ids,
                                         k_of_n=cfg.k_of_n, min_posterior=cfg.min_posterior,
                                         rationale_similarity=cfg.rationale_similarity)
    st.note("strategy", r.gate_note)
    print("consensus gate:", r.gate_note)
    r.consensus = consensus = gate.fit(r.panel_verdicts).table()
    st.write("consensus", consensus, contract="consensus")
    st.metric("consensus_coverage", round(float((consensus["status"] == "accepted").mean()), 4), headline=True)
    for status, n in consensus["status"].value_counts().items():
        st.metric(f"consensus_{status}", int(n))
    if r.truth_labels is not None:  # generated data: how right are the accepted labels?
        truth = r.hidden.set_index("item_id")["true_label"]
        acc = consensus[consensus["status"] == "accepted"]
        prec = float((acc["category"].to_numpy() == truth.reindex(acc["item_id"]).to_numpy()).mean()) \
            if len(acc) else float("nan")
        st.metric("consensus_precision_vs_truth", None if pd.isna(prec) else round(prec, 4), headline=True)
        print(f"accepted labels that match the hidden truth: {prec:.3f}")
    return consensus


def find_seed_conflicts(r: Resolution) -> pd.DataFrame:
    """Production requests that the seed annotates otherwise, exactly after normalisation or as paraphrases:
    writes ``conflicts``; with a truth, the share of the planted conflicts found."""
    from flywheel_lib.curation.conflicts import find_conflicts

    st, items = r.st, r.items
    r.conflicts = conflicts = find_conflicts(items, similarity_threshold=r.cfg.similarity_threshold,
                                             prefilter=r.cfg.conflict_prefilter)
    st.write("conflicts", conflicts)
    st.note("conflict_detection", conflicts.attrs)
    st.metric("conflicts_exact", int((conflicts["match"] == "exact").sum()))
    st.metric("conflicts_paraphrase", int((conflicts["match"] == "paraphrase").sum()))
    st.metric("conflicts_found", int(len(conflicts)), headline=True)
    if "conflict_with" in r.hidden.columns:  # generated data: how many planted conflicts were found?
        hidden = r.hidden
        planted = hidden[hidden["item_id"].isin(items.loc[items["source"] == "production", "item_id"])
                         & (hidden["conflict_with"].fillna("") != "")]
        if len(planted):
            rec = float(planted["item_id"].isin(conflicts["item_id"]).mean())
            st.metric("conflict_recall_planted", round(rec, 4), headline=True)
            print(f"planted conflicts found: {rec:.3f} of {len(planted)}")
    print(conflicts.attrs)
    return conflicts


def _import_review(r: Resolution) -> None:
    from flywheel_lib.curation.reviewers import ReviewAggregator, read_answers, review_files
    from flywheel_lib.stage import resolve_path

    files = [r.st.input_file(f) for f in review_files(resolve_path(r.cfg.review_import))]
    r.answers = read_answers(files, taxonomy=r.tax)
    r.st.write("review_answers", r.answers)  # every answer, one row per reviewer and item
    r.aggregator = ReviewAggregator(r.cfg.review.resolution,
                                    min_answers=min(2, r.cfg.review.per_item)).fit(r.answers)
    r.reviewed = r.aggregator.reviewed()  # one decision per resolved item; requeued ones stay unlabelled
    r.st.metric("human_decisions_imported", int(len(r.reviewed)), headline=True)


def decision_tree(r: Resolution) -> pd.DataFrame:
    """Human decisions first (``review_import``), then the tree per production item under every gate policy on the
    same verdicts; this run keeps ``gate_scope``/``contradiction``: writes ``resolutions`` and records the actions,
    the labels changed and, with a truth, the curated precision. Returns the policies side by side."""
    from flywheel_lib.curation.diagnostics import compare_gate_policies, complexity_for
    from flywheel_lib.curation.resolve import CONTRADICTIONS, GATE_SCOPES
    from flywheel_lib.curation.resolve import check_outputs as check_logged_outputs

    st, cfg = r.st, r.cfg
    if cfg.gate_scope not in GATE_SCOPES or cfg.contradiction not in CONTRADICTIONS:
        raise ValueError(f"03_resolve: gate_scope {cfg.gate_scope!r} / contradiction {cfg.contradiction!r}: expected "
                         f"one of {', '.join(GATE_SCOPES)} / {', '.join(CONTRADICTIONS)}")
    r.valid = check_logged_outputs(r.items, r.dom) if cfg.check_outputs else None
    if r.valid is not None:
        st.metric("production_outputs_invalid", int((~r.valid).sum()))
    if cfg.review_import:
        _import_review(r)
    r.scopes, r.resolutions = compare_gate_policies(
        r.items, r.consensus, r.tax, keep=cfg.policy, truth=r.hidden, complexity=complexity_for(r.dom),
        conflicts=r.conflicts, reviewed=r.reviewed, output_valid=r.valid)
    print(f"this run uses {cfg.policy}")
    st.note("gate_scope_comparison", r.scopes.astype(object).where(r.scopes.notna(), None).to_dict())
    st.note("gate_scope", {"gate_scope": cfg.gate_scope, "contradiction": cfg.contradiction})
    st.metric("gate_scope", cfg.gate_scope)
    res = r.resolutions
    st.write("resolutions", res, contract="resolutions")
    for a, n in res["action"].value_counts().items():
        st.metric(f"action_{a}", int(n), headline=a in ("refusal", "clarify", "opt_out"))
    changed = int((res["label_after"].notna() & (res["label_after"] != res["label_before"])).sum())
    st.metric("production_labels_changed", changed, headline=True)
    st.metric("production_outputs_replaced", int((res["action"] == "replace").sum()))
    if r.truth_labels is not None:
        st.metric("curated_precision_vs_truth", r.scopes.at["precision vs truth", cfg.policy], headline=True)
    return r.scopes


def training_sets(r: Resolution) -> pd.DataFrame | None:
    """``production_only``, ``naive_merge``, ``curated`` and one ``curated_<policy>`` per ``train_policies``; in a
    later cycle added to the parent's corpus, with the stale refusals of newly supported capabilities taken out
    and relabelled (:mod:`flywheel_lib.stages.resolve_review`). Writes ``train_sets``. Returns the corpus growth
    table of a later cycle (parent, new, now per variant), else None."""
    from flywheel_lib.curation.datasets import build_train_sets, carry_corpus, parse_policy, policy_variant
    from flywheel_lib.curation.resolve import resolve
    from flywheel_lib.stages.resolve_review import relabel_stale_refusals

    st = r.st
    train_sets = build_train_sets(r.items, r.resolutions, r.tax, reviewed=r.reviewed)
    no_query = train_sets.attrs.get("solvable_without_query", [])
    st.metric("train_solvable_without_query", len(no_query))
    if no_query:  # a reviewer said solvable but wrote no query for a request the model refused: nothing to learn from
        st.note("solvable_without_query", {"n": len(no_query), "item_ids": no_query[:50]})
        print(f"{len(no_query)} solvable curated rows have no query and are left out of the training sets: "
              f"{no_query[:5]}")
    for pol in r.cfg.train_policies:  # the same verdicts and review, another policy: a variant of its own
        scope, contra, _ = parse_policy(pol)
        alt = resolve(r.items, r.consensus, r.tax, conflicts=r.conflicts, reviewed=r.reviewed, output_valid=r.valid,
                      gate_scope=scope, contradiction=contra)
        train_sets = pd.concat([train_sets, policy_variant(r.items, alt, r.tax, policy=pol, reviewed=r.reviewed)],
                               ignore_index=True)
    growth = None
    if st.parent is not None:  # a later cycle: the accepted new labels are added to the parent's corpus
        parent_sets = st.parent.read("train_sets")
        new_rows = train_sets.groupby("variant").size()
        train_sets = carry_corpus(train_sets, parent_sets)
        growth = pd.DataFrame({"parent": parent_sets.groupby("variant").size(), "new this cycle": new_rows,
                               "corpus now": train_sets.groupby("variant").size()})
        train_sets = relabel_stale_refusals(r, train_sets)
    st.write("train_sets", train_sets)
    for variant, n in train_sets["variant"].value_counts().items():
        st.metric(f"train_{variant}", int(n), headline=variant == "curated")
    r.train_sets = train_sets
    return growth


def selection_bias(r: Resolution):
    """The curated rows from production against the production pool, per category: region coverage, query
    complexity and request length; records the solvable category's ratios and the warnings."""
    from flywheel_lib.curation.diagnostics import complexity_for, production_pool
    from flywheel_lib.curation.diagnostics import selection_bias as measure

    st, ts = r.st, r.train_sets
    pool = production_pool(r.items, r.hidden)
    cur_rows = ts[(ts["variant"] == "curated") & ts["item_id"].isin(pool["item_id"])]
    r.bias = bias = measure(cur_rows, pool, complexity=complexity_for(r.dom), category="category",
                            curated_category="label", min_share_ratio=r.cfg.min_share_ratio, seed=r.cfg.seed)
    st.note("selection_bias_regions", bias.region_source)
    for name, dim in (("curated_clauses_ratio", "clauses"), ("curated_length_ratio", "length"),
                      ("curated_min_family_share_ratio", "region")):
        val = bias.metric(r.tax.solvable_id, dim)
        st.metric(name, None if pd.isna(val) else round(val, 4), headline=True)
    st.note("selection_bias_warnings", bias.warnings)
    for w in bias.warnings:
        print("WARNING selection bias:", w)
    if not bias.warnings:
        print("no region dropped and no mean outside the tolerance")
    return bias


def stage_warnings(r: Resolution) -> list[str]:
    """What would leave 04 nothing to learn from (a gate that accepts nothing, every solvable row opted out, an empty
    class), with the selection-bias warnings: printed to stdout and stderr, note ``warnings``."""
    import sys

    from flywheel_lib.curation.warnings import recipe_warnings

    out = recipe_warnings(r.tax, consensus=r.consensus, resolutions=r.resolutions, train_sets=r.train_sets)
    out += [f"selection bias: {w}" for w in r.bias.warnings]
    for w in out:
        print(f"WARNING: {w}")
        print(f"WARNING: {w}", file=sys.stderr)
    if not out:
        print("no warnings: the gate accepts items, solvable rows are kept and the curated set has every class")
    r.st.note("warnings", out)
    r.st.metric("n_warnings", len(out))
    return out
