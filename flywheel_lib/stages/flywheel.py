"""06_flywheel: the promoted model meets new traffic, and the lineage is read cycle by cycle.

The steps, in the notebook's order: :func:`open_deployment` (which model 05 deployed), :func:`send_traffic` (the
simulator's requests answered by that model and logged with implicit signals, or the user's next log file),
:func:`traffic_accuracy`, :func:`lineage` (metrics per cycle), :func:`failure_patterns` (per drift scenario:
fixed or not, and how it entered the corpus), :func:`arena_and_store` (the levers across cycles),
:func:`monitoring` (explicit, implicit and true accuracy; latency bias) and :func:`judge_drift`. The figures are in
:mod:`flywheel_lib.stages.flywheel_plots`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from flywheel_lib.stages import StageConfig


@dataclass(frozen=True)
class FlywheelConfig(StageConfig):
    """06_flywheel's parameters (their help: the notebook's parameters cell)."""

    seed: int
    domain: str
    taxonomy: str
    cache_dir: str
    cycle: int
    n_traffic: int
    drift_schedule: str
    next_log_path: str
    column_map: dict
    gen_batch_size: int
    max_new_tokens: int
    constrained: bool
    zero_result_guard: bool
    zero_result_floor: float
    threads: int
    min_signals: int


@dataclass
class Deployment:
    """The deployed model of this cycle and, after :func:`send_traffic`, its logged traffic."""

    st: Any
    cfg: FlywheelConfig
    tax: Any
    dom: Any
    deployed: str
    promotion: dict
    traffic: pd.DataFrame = field(default_factory=pd.DataFrame)
    traffic_truth: pd.DataFrame = field(default_factory=pd.DataFrame)
    chain: list = field(default_factory=list)


def open_deployment(st, cfg: FlywheelConfig) -> Deployment:
    """The model 05 promoted (or the baseline it kept): note ``deployed_model``. Fails when 05 decided nothing."""
    from flywheel_lib import load_taxonomy
    from flywheel_lib.domains import get_domain

    promotion = st.records_of("05_evaluate").get("notes", {}).get("promotion")
    if not promotion:
        raise RuntimeError("05_evaluate recorded no promotion decision in this run: run 05 first")
    deployed = promotion["winner"]
    st.note("deployed_model", deployed)
    print(("promoted " if promotion["promoted"] else "kept the baseline ")
          + f"-> deploying {deployed!r}: {promotion['reason']}")
    return Deployment(st, cfg, load_taxonomy(cfg.taxonomy), get_domain(cfg.domain), deployed, promotion)


def _simulate(dep: Deployment) -> tuple[pd.DataFrame, pd.DataFrame]:
    from flywheel_lib.evaluation import VariantGenerator
    from flywheel_lib.evaluation.constrained import answer_grammar
    from flywheel_lib.flywheel import log_traffic
    from flywheel_lib.training.record import read_finetune

    st, cfg, dom, tax, deployed = dep.st, dep.cfg, dep.dom, dep.tax, dep.deployed
    requests = dom.traffic_requests(seed=cfg.seed, cycle=cfg.cycle, n=cfg.n_traffic, schedule=cfg.drift_schedule)
    ft = read_finetune(st)
    if deployed == "deployed_prev":  # the baseline kept from the previous cycle stays deployed
        adapters = {deployed: st.parent.deployed_model()[1]}
    else:
        adapters = {deployed: st.view().adapter(deployed)} if deployed in ft.variants else {}
    grammar = answer_grammar(dom, tax.decline_ids) if cfg.constrained else None
    guard = dict(execute=dom.execute, zero_result_floor=cfg.zero_result_floor) if cfg.zero_result_guard else {}
    gen = VariantGenerator(ft.base_model, adapters, cache_dir=cfg.cache_dir, threads=cfg.threads, grammar=grammar,
                           **guard)
    answers = gen.generate(requests["text"].tolist(), variant=deployed if adapters else "base",
                           batch_size=cfg.gen_batch_size, max_new_tokens=cfg.max_new_tokens)
    if deployed in gen.heads_ and cfg.zero_result_guard:
        st.metric("zero_result_guarded", len(gen.guarded_[deployed]))
    return log_traffic(requests, answers, domain=dom, taxonomy=tax, seed=cfg.seed, cycle=cfg.cycle)


def send_traffic(dep: Deployment) -> pd.DataFrame:
    """This cycle's traffic (items contract, source ``traffic``) and what only the simulator knows about it
    (``traffic_truth``): the user's next log file with ``next_log_path``, else the domain's simulator answered by
    the deployed model. Fails for a domain without a simulator and no log file."""
    from flywheel_lib.domains.base import traffic_simulator

    st, cfg = dep.st, dep.cfg
    if cfg.next_log_path:
        from flywheel_lib.data import load_items

        dep.traffic = load_items(st.input_file(cfg.next_log_path), dict(cfg.column_map), "traffic", dep.tax,
                                 workload_id=cfg.domain)
        dep.traffic_truth = pd.DataFrame({"item_id": dep.traffic["item_id"]})
    elif traffic_simulator(dep.dom) is not None:
        dep.traffic, dep.traffic_truth = _simulate(dep)
    else:
        raise ValueError(f"domain {cfg.domain!r} has no traffic simulator: name the next cycle's log file in "
                         "next_log_path")
    st.write("traffic", dep.traffic, contract="items")
    st.write("traffic_truth", dep.traffic_truth)
    st.metric("n_traffic", len(dep.traffic), headline=True)
    return dep.traffic


@dataclass
class TrafficAccuracy:
    """The deployed model's accuracy on its traffic by true label and scenario, the signals' means for right and
    wrong answers, and the first wrong answers."""

    by_scenario: pd.DataFrame
    signals: pd.DataFrame
    wrong: pd.DataFrame


def traffic_accuracy(dep: Deployment) -> TrafficAccuracy | None:
    """Where the truth is known (a simulator): ``traffic_accuracy`` and, on the new scenarios,
    ``traffic_accuracy_new_scenarios``. None for a user's log."""
    if "correct" not in dep.traffic_truth:
        return None
    t = dep.traffic.merge(dep.traffic_truth, on="item_id")
    dep.st.metric("traffic_accuracy", round(float(t["correct"].mean()), 4), headline=True)
    by = t.groupby(["true_label", "scenario"])["correct"].agg(["mean", "size"]) \
        .rename(columns={"mean": "accuracy", "size": "n"})
    new = t[t["scenario"] == "new"]
    if len(new):
        dep.st.metric("traffic_accuracy_new_scenarios", round(float(new["correct"].mean()), 4))
    sig = [c for c in t.columns if c.startswith("signal_")]
    signals = t.groupby("correct")[sig].mean().T.rename(columns={True: "answer right", False: "answer wrong"})
    return TrafficAccuracy(by, signals, t.loc[~t["correct"], ["text", "true_label", "scenario", "answer"]].head(12))


@dataclass
class Lineage:
    """The lineage up to this run: one row per cycle, and the metrics per cycle and variant with intervals."""

    summary: pd.DataFrame
    metrics: pd.DataFrame

    def table(self) -> pd.DataFrame:
        """Pass rate, refusal accuracy and false-refusal rate as ``value [lo, hi]``, per cycle and variant."""
        m = self.metrics
        show = m[m["metric"].isin(["pass_rate", "refusal_accuracy", "false_refusal_rate"])]
        cells = show.assign(cell=show.apply(lambda r: f"{r.value:.3f} [{r.lo:.3f}, {r.hi:.3f}]", axis=1))
        return cells.pivot_table(index=["cycle", "variant"], columns="metric", values="cell", aggfunc="first")


def lineage(dep: Deployment) -> Lineage:
    """The runs of this lineage, first cycle first, with their summary and metrics."""
    from flywheel_lib.flywheel import cycle_metrics, cycle_summary, lineage_chain

    dep.chain = lineage_chain(dep.st.run_dir)
    return Lineage(cycle_summary(dep.chain), cycle_metrics(dep.chain))


@dataclass
class Patterns:
    """Per drift scenario whether the candidate fixed what the deployed model failed (05's drift slice), and how
    each drift scenario of the judged traffic entered the corpus (unanimous panel, review, or left out)."""

    patterns: pd.DataFrame | None
    entry: pd.DataFrame | None


def failure_patterns(dep: Deployment) -> Patterns:
    """Records ``patterns_<status>`` (fixed, still_failing, held, broken) from 05's drift slice and, in a later
    cycle, ``new_scenarios_labelled_panel`` / ``_review``, ``new_scenarios_kept_logged`` (the deployed model's
    logged label kept without a unanimous panel or a review) and ``new_scenarios_left_out``."""
    from flywheel_lib.flywheel.slices import scenario_entry_for

    st, patterns = dep.st, None
    if st.exists("drift_patterns"):
        patterns = st.read("drift_patterns")
        st.note("failure_patterns", patterns.to_dict("records"))
        for status in ("fixed", "still_failing", "held", "broken"):
            st.metric(f"patterns_{status}", int((patterns["status"] == status).sum()), headline=status == "fixed")
    else:
        print("no drift slice in this cycle (a first cycle has none): no failure patterns to compare")
    entry = scenario_entry_for(st, schedule=dep.cfg.drift_schedule, cycle=dep.cfg.cycle) \
        if st.parent is not None else None
    if entry is not None and len(entry):
        st.write("scenario_entry", entry)
        new = entry[entry["new"]]
        st.metric("new_scenarios_labelled_panel", int(new["panel"].sum()))
        st.metric("new_scenarios_labelled_review", int(new["review"].sum()))
        st.metric("new_scenarios_kept_logged", int(new["kept"].sum()))
        st.metric("new_scenarios_left_out", int(new["left_out"].sum()))
    return Patterns(patterns, entry)


def verdict(dep: Deployment, lin: Lineage) -> str:
    """What this cycle changed, in one sentence (note ``cycle_verdict``; ``cycle_pass_rate_delta``)."""
    from flywheel_lib.flywheel import cycle_verdict

    text, delta = cycle_verdict(lin.summary, lin.metrics)
    if delta is not None:
        dep.st.metric("cycle_pass_rate_delta", round(delta, 4), headline=True)
    dep.st.note("cycle_verdict", text)
    return text


@dataclass
class LeversAcross:
    """Each model's Elo per cycle that ran the arena, the verdict on the Elo gains, and the store's growth."""

    arena: pd.DataFrame
    elo_verdict: str
    store: pd.DataFrame

    def arena_table(self) -> pd.DataFrame:
        a = self.arena
        cells = a.assign(cell=a.apply(lambda r: f"{r.elo:.0f} [{r.elo_lo:.0f}, {r.elo_hi:.0f}]", axis=1))
        return cells.pivot_table(index="identity", columns="cycle", values="cell", aggfunc="first")


def arena_and_store(dep: Deployment) -> LeversAcross:
    """Arena ratings and the example store across the lineage (note ``arena_verdict``)."""
    from flywheel_lib.levers import arena_across_cycles, elo_verdict, store_across_cycles

    arena = arena_across_cycles(dep.chain)
    text = elo_verdict(arena)
    dep.st.note("arena_verdict", text)
    return LeversAcross(arena, text, store_across_cycles(dep.chain))


@dataclass
class Monitoring:
    """Three estimates of the deployed model's accuracy (explicit, implicit, true) with the survivorship gap, what
    the implicit rule's precision and recall were, and feedback by latency bucket."""

    estimates: pd.DataFrame | None
    extra: dict
    latency: pd.DataFrame | None


def monitoring(dep: Deployment) -> Monitoring:
    """Records ``accuracy_<estimate>`` (with ``_lo``/``_hi``), ``survivorship_gap``, the implicit rule's quality,
    the heavy users' shares, and writes ``latency_buckets``; nothing where the traffic has no feedback."""
    from flywheel_lib.monitoring.feedback import accuracy_estimates, latency_buckets

    st = dep.st
    mon = dep.traffic.merge(dep.traffic_truth, on="item_id", how="left")
    truth = mon["correct"].astype(bool) if "correct" in mon.columns and mon["correct"].notna().all() else None
    sig = [c for c in mon.columns if c.startswith("signal_")]
    est, lat = None, None
    extra: dict = {}
    if "feedback" in mon.columns and sig:
        est, extra = accuracy_estimates(mon, truth, min_signals=dep.cfg.min_signals, seed=dep.cfg.seed)
        for r in est.itertuples():
            key = r.estimate if r.estimate == "survivorship_gap" else f"accuracy_{r.estimate}"
            for suffix, val in (("", r.value), ("_lo", r.lo), ("_hi", r.hi)):
                st.metric(key + suffix, None if pd.isna(val) else round(float(val), 4), headline=not suffix)
        for k, v in extra.items():
            st.metric(k, v if isinstance(v, int) else None if pd.isna(v) else round(float(v), 4))
        if "heavy_user" in mon.columns:
            rated = mon["feedback"].notna()
            st.metric("feedback_heavy_user_share",
                      round(float(mon.loc[rated, "heavy_user"].mean()), 4) if rated.any() else None)
            st.metric("requests_heavy_user_share", round(float(mon["heavy_user"].mean()), 4))
    else:
        print("the traffic carries no explicit feedback or implicit signals: nothing to compare")
    if "latency_s" in mon.columns:
        lat = latency_buckets(mon, truth)
        st.write("latency_buckets", lat)
    return Monitoring(est, extra, lat)


def judge_drift(dep: Deployment) -> pd.DataFrame:
    """Each judge's kappa per cycle (01's fresh hold-out slices) with the alarm for a kappa that leaves its first
    cycle's 95% interval: metric ``drift_alarm``, note ``drift_alarm``."""
    from flywheel_lib.monitoring.drift import drift_alarm, drift_table

    drift = drift_alarm(drift_table(dep.chain))
    alarmed = sorted(drift.loc[drift["alarm"], "judge"].unique())
    dep.st.metric("drift_alarm", bool(alarmed), headline=True)
    dep.st.note("drift_alarm", {"judges": alarmed, "cycles": sorted(int(c) for c in drift["cycle"].unique())})
    return drift


def run(st, cfg: FlywheelConfig) -> Deployment:
    """Every step of 06_flywheel in the notebook's order, without Jupyter (no figures)."""
    dep = open_deployment(st, cfg)
    send_traffic(dep)
    traffic_accuracy(dep)
    lin = lineage(dep)
    failure_patterns(dep)
    verdict(dep, lin)
    for step in (arena_and_store, monitoring, judge_drift):
        step(dep)
    return dep
