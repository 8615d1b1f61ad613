"""00_data: ingest, scrub, describe, validate, and write the run's items with their hidden truth kept apart.

The steps, in the notebook's order: :func:`open_data`, :func:`gather` (the generator, user files, or a later
cycle's sampled traffic), :func:`plant_inputs` (simulator only), :func:`scrub`, :func:`describe`,
:func:`seed_conflicts`, :func:`signals_and_zero_results`, :func:`validate`, :func:`route_flagged` and
:func:`write_items`. The figures are in :mod:`flywheel_lib.stages.data_plots`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from flywheel_lib.stages import StageConfig
from flywheel_lib.stages.groups import ValidationParams


@dataclass(frozen=True)
class DataConfig(StageConfig):
    """00_data's parameters (their help: the notebook's parameters cell)."""

    seed: int
    domain: str
    taxonomy: str
    source_kind: str
    n_production: int
    n_seed_solvable: int
    n_seed_refusal: int
    n_eval: int
    n_conflicts: int
    pii_rate: float
    annotation_error_rate: float
    scrub_pii: bool
    data_path: str
    split_fractions: dict
    production_path: str
    seed_path: str
    eval_path: str
    column_map: dict
    max_text_chars: int
    text_overflow: str
    parent_run: str
    judge_budget: int
    plant_rates: dict
    validation: ValidationParams


@dataclass
class Ingest:
    """What 00's steps share: the stage, the items as they are built, and what the steps found."""

    st: Any
    cfg: DataConfig
    tax: Any
    dom: Any
    items: pd.DataFrame = field(default_factory=pd.DataFrame)
    parent_truth: pd.DataFrame | None = None
    pii_report: pd.DataFrame = field(default_factory=pd.DataFrame)
    pii_recall: pd.DataFrame = field(default_factory=pd.DataFrame)
    conflicts: pd.DataFrame = field(default_factory=pd.DataFrame)
    signals: pd.DataFrame = field(default_factory=pd.DataFrame)
    validator_scores: pd.DataFrame = field(default_factory=pd.DataFrame)
    n_validated: int = 0

    @property
    def production(self) -> pd.Series:
        return self.items["source"] == "production"


def open_data(st, cfg: DataConfig) -> Ingest:
    """The taxonomy and the domain; notes ``taxonomy``, ``domain`` and ``scrub_pii``."""
    from flywheel_lib import load_taxonomy
    from flywheel_lib.domains import get_domain

    tax = load_taxonomy(cfg.taxonomy)
    st.note("taxonomy", tax.version_id)
    st.note("domain", cfg.domain)
    st.note("scrub_pii", cfg.scrub_pii)
    return Ingest(st, cfg, tax, get_domain(cfg.domain))


def gather(d: Ingest) -> pd.DataFrame:
    """The items: a later cycle's deployed-model traffic sampled within ``judge_budget`` (failure signals first),
    else the domain's generator or the user's files by ``column_map`` (every label checked against the taxonomy,
    texts over ``max_text_chars`` cut or refused). Every named input file is checked first."""
    st, cfg = d.st, d.cfg
    for p in (cfg.data_path, cfg.production_path, cfg.seed_path, cfg.eval_path):
        if p:
            st.input_file(p)
    if cfg.parent_run:
        from flywheel_lib.data import gather_from_parent
        from flywheel_lib.flywheel.sampling import budget_sample

        d.items, d.parent_truth = gather_from_parent(st.parent, sampler=budget_sample, budget=cfg.judge_budget,
                                                     seed=cfg.seed)
    else:
        from flywheel_lib.data import gather_items
        from flywheel_lib.data.loaders import DoorReport

        sizes = dict(n_production=cfg.n_production, n_seed_solvable=cfg.n_seed_solvable,
                     n_seed_refusal=cfg.n_seed_refusal, n_eval=cfg.n_eval, n_conflicts=cfg.n_conflicts,
                     pii_rate=cfg.pii_rate, annotation_error_rate=cfg.annotation_error_rate)
        door = DoorReport()
        d.items = gather_items(domain=d.dom, taxonomy=d.tax, source_kind=cfg.source_kind, seed=cfg.seed, sizes=sizes,
                               production_path=cfg.production_path, seed_path=cfg.seed_path,
                               eval_path=cfg.eval_path, data_path=cfg.data_path, column_map=cfg.column_map,
                               split_fractions=cfg.split_fractions, max_text_chars=cfg.max_text_chars,
                               text_overflow=cfg.text_overflow, report=door)
        st.metric("text_truncated", door.n_truncated)
        if door.truncated:  # texts cut to max_text_chars: how many per file, the first ids
            st.note("text_truncated", {f: {"rows": len(v), "ids": v[:20]} for f, v in door.truncated.items()})
    print(f"{len(d.items):,} items, columns: {', '.join(d.items.columns)}")
    return d.items


def plant_inputs(d: Ingest) -> pd.Series | None:
    """Generated data in a first cycle: a share of production requests (``plant_rates``) replaced by off-topic,
    foreign-language and injection requests, so the validators can be scored (conflict and PII rows are never
    replaced). Returns the planted kinds' counts, or None where nothing is planted."""
    from flywheel_lib.domains.base import traffic_simulator

    cfg, items = d.cfg, d.items
    if not (cfg.source_kind == "generate" and not cfg.parent_run and cfg.plant_rates
            and traffic_simulator(d.dom) is not None):
        return None
    prod = d.production
    ok = items.get("conflict_with", pd.Series("", index=items.index)).fillna("").eq("")
    ok &= items.get("pii_spans", pd.Series("[]", index=items.index)).fillna("[]").eq("[]")
    planted = d.dom.plant_requests(items[prod], seed=cfg.seed, rates=dict(cfg.plant_rates), key="production-plant",
                                   eligible=ok[prod])
    items["planted"] = ""
    items.loc[prod, planted.columns] = planted
    d.st.note("plant_rates", dict(cfg.plant_rates))
    return items.loc[items["planted"] != "", "planted"].value_counts().rename("planted")


def scrub(d: Ingest) -> pd.DataFrame:
    """Personal data in request texts replaced by typed placeholders (with ``scrub_pii``); records what was found per
    type and, where the generator planted PII, the scrubber's recall. Returns a few rows per source, the columns
    that are empty in every row left out."""
    from flywheel_lib.data import scrub_items
    from flywheel_lib.data.stats import nothing_to_show

    st = d.st
    d.items, d.pii_report, d.pii_recall = items, report, recall = scrub_items(d.items, enabled=d.cfg.scrub_pii)
    for row in report.itertuples():
        st.metric(f"pii_found_{row.type.lower()}", int(row.spans))
    st.metric("pii_rows", int((items["pii_found"] != "[]").sum()), headline=True)
    if not recall.empty:
        for row in recall.dropna().itertuples():
            st.metric(f"pii_recall_{row.type.lower()}", round(float(row.recall), 4))
        tot = recall["planted"].sum()
        if tot:
            st.metric("pii_recall", round(float(recall["found"].sum() / tot), 4), headline=True)
    sample = items.groupby("source").head(3)[["item_id", "source", "text", "label", "output"]]
    empty = [c for c in sample.columns if nothing_to_show(items[c], c)]
    if empty:
        print(f"not shown, empty in every row of this data: {', '.join(empty)} (e.g. user logs without model outputs)")
    return sample.drop(columns=empty).fillna("")


def describe(d: Ingest) -> list[pd.DataFrame]:
    """Counts per source and label (metrics ``n_<source>``, ``n_<source>_<label>``), the share of production that
    should be refused where a truth says so. Returns the tables to show: class balance by label (and by hidden
    truth), request lengths, duplicates."""
    from flywheel_lib.data import class_balance, dedup_report, length_stats

    st, items = d.st, d.items
    tables = [class_balance(items, "label")]
    if "true_label" in items.columns:
        tables.append(class_balance(items, "true_label"))
    else:
        print("no hidden truth: the data maps no true_label, so the judges and the gate are measured on the seed only")
    for source, n in items["source"].value_counts().sort_index().items():
        st.metric(f"n_{source}", int(n), headline=source == "production")
    for (source, label), n in items.groupby(["source", "label"]).size().items():
        st.metric(f"n_{source}_{label}", int(n))
    if "true_label" in items.columns:
        prod = items[items["source"] == "production"]
        share = float((prod["true_label"].notna() & (prod["true_label"] != d.tax.solvable_id)).mean()) \
            if len(prod) else 0.0
        st.metric("production_should_refuse_share", round(share, 4), headline=True)
    return tables + [length_stats(items), dedup_report(items)]


def seed_conflicts(d: Ingest) -> pd.DataFrame:
    """Production successes whose normalised text equals a seed refusal or clarification (the naive merge's
    problem): ``conflicts_found``, and ``conflicts_planted`` where the generator planted them."""
    from flywheel_lib.data import exact_refusal_conflicts
    from flywheel_lib.data.stats import nothing_to_show

    d.conflicts = conflicts = exact_refusal_conflicts(d.items, d.tax)
    d.st.metric("conflicts_found", int(len(conflicts)), headline=True)
    if "conflict_with" in d.items.columns:
        d.st.metric("conflicts_planted", int((d.items["conflict_with"].fillna("") != "").sum()))
    if not len(conflicts):
        print(f"{nothing_to_show(conflicts, 'exact conflicts')}: no production request equals a seed refusal or "
              "clarification")
    return conflicts


def signals_and_zero_results(d: Ingest) -> pd.DataFrame:
    """Implicit feedback signals per true class, and how often the production model's query on a should-refuse
    request selects nobody (``zero_result_rate_should_refuse``). Returns the signal table (empty without signals)."""
    from flywheel_lib.data import signal_rates, zero_result_rate
    from flywheel_lib.data.stats import nothing_to_show

    d.signals = signals = signal_rates(d.items)
    if signals.empty:
        print(f"{nothing_to_show(signals, 'implicit feedback signals')}: the production rows carry no signal_* column")
    zr = zero_result_rate(d.items, d.dom, d.tax)
    d.st.note("zero_result", zr)
    if zr["zero_rate"] is not None:
        d.st.metric("zero_result_rate_should_refuse", round(zr["zero_rate"], 4), headline=True)
        print(f"zero-result rate on should-refuse requests: {zr['zero_rate']:.3f} ({zr['zero']:,} of "
              f"{zr['executed']:,} executed outputs; {zr['invalid']:,} invalid)")
    else:
        print(f"zero-result rate {zr['why']}")
    return signals


def validate(d: Ingest) -> pd.DataFrame:
    """Every production request through the input validators (topic, length, language, personal data, injection,
    anomaly against the history: the parent's items, else the seed); a ``flag_<name>`` column each. Scored against
    the planted truth where there is one. Returns the scores (flags, precision, recall per validator)."""
    from flywheel_lib.monitoring import ValidatorConfig, run_validators, score_validators

    st, cfg, items = d.st, d.cfg, d.items
    prod = d.production
    d.n_validated = int(prod.sum())
    reference = items.loc[items["source"] == "seed", "text"]
    vc = cfg.validation
    enabled = tuple(vc.checks)
    if reference.empty and "topic" in enabled:  # no seed to compare with
        enabled = tuple(v for v in enabled if v != "topic")
        st.note("validator_topic", "skipped: no seed requests to compare with")
    history, history_source = None, "seed"
    if st.parent is not None and st.parent.exists("items"):
        old = st.parent.read("items")
        history = old.loc[old["source"].isin(["production", "seed"]), "text"]
        history_source = f"items of {st.parent.run_id}"
    vcfg = ValidatorConfig(topic_min_similarity=vc.topic_min_similarity, min_tokens=vc.min_tokens,
                           max_tokens=vc.max_tokens, language=vc.language, anomaly_quantile=vc.anomaly_quantile,
                           enabled=enabled, encoder=vc.encoder)
    d.items, vinfo = run_validators(items, reference=reference if len(reference) else items.loc[prod, "text"],
                                    history=history, config=vcfg, language_method=vc.language_method, rows=prod)
    items = d.items
    st.note("validators", {"enabled": list(enabled), "routing": vc.routing, "history": history_source,
                           **{k: round(v, 4) for k, v in vinfo.items()}})
    if "planted" in items.columns:
        vtruth = items[["item_id", "planted"]]
    elif d.parent_truth is not None and "planted" in d.parent_truth.columns:
        vtruth = d.parent_truth[["item_id", "planted"]]
    else:
        vtruth = None
    d.validator_scores = scores = score_validators(items.loc[prod], vtruth)
    for r in scores.itertuples():
        st.metric(f"validator_{r.validator}_flagged", int(r.flagged), headline=r.validator == "injection")
        st.metric(f"validator_{r.validator}_precision", None if pd.isna(r.precision) else round(float(r.precision), 4))
        st.metric(f"validator_{r.validator}_recall", None if pd.isna(r.recall) else round(float(r.recall), 4))
    st.metric("validator_any_flagged", int(items.loc[prod, "flag_any"].sum()))
    if vtruth is None:
        print("no planted truth (user data): the validators' precision and recall are not measured, only their flags")
        scores = scores[["validator", "flagged"]]
    for name in [c[5:] for c in items.columns if c.startswith("flag_") and c != "flag_any"]:
        ex = items.loc[prod & items[f"flag_{name}"], "text"].head(3).tolist()
        if ex:
            print(f"{name}: {ex}")
    return scores


def route_flagged(d: Ingest) -> pd.DataFrame:
    """Flagged production rows kept with their flags (``flag``), moved to ``validator_review`` (``review``) or
    dropped (``drop``). Returns the rows that left the table."""
    from flywheel_lib.monitoring import route

    routing = d.cfg.validation.routing
    d.items, routed_out = route(d.items, routing, rows=d.production)
    d.st.metric("validator_routed_out", int(len(routed_out)))
    if routing == "review" and len(routed_out):
        d.st.write("validator_review", routed_out)
    print(f"routing {routing!r}: {len(routed_out)} flagged production rows left the table")
    return routed_out


def write_items(d: Ingest) -> None:
    """The items the judges see and, apart, the hidden truth (a later cycle's came with the parent's traffic): one
    atomic write each."""
    from flywheel_lib.data import split_truth

    items, truth = split_truth(d.items)
    if d.parent_truth is not None:  # a later cycle: the truth came with the parent's traffic
        truth = d.parent_truth
    path = d.st.write("items", items, contract="items")
    d.st.write("truth", truth)
    d.st.metric("n_items", int(len(items)))
    d.items = items
    print(path.name, f"({len(truth.columns) - 1} truth columns kept apart)")


def run(st, cfg: DataConfig) -> Ingest:
    """Every step of 00_data in the notebook's order, without Jupyter (no figures)."""
    d = open_data(st, cfg)
    for step in (gather, plant_inputs, scrub, describe, seed_conflicts, signals_and_zero_results, validate,
                 route_flagged, write_items):
        step(d)
    return d
