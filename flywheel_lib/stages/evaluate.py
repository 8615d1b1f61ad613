"""05_evaluate: every variant on the held-out set, scored by execution, compared by paired tests, and promoted.

The steps, in the notebook's order: :func:`open_evaluation` (the eval items and what 04 trained),
:func:`generate_variants` (every variant's answers, with the decoder and head comparisons of a first cycle),
:func:`score_variants` (predictions, metrics with Wilson intervals, per-category recall),
:func:`seed_comparisons` and :func:`policy_comparisons` (McNemar tables), then the loop's steps in
:mod:`flywheel_lib.stages.evaluate_loop` (example store, drift slice, promotion, levers, arena).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from flywheel_lib.stages import StageConfig
from flywheel_lib.stages.groups import ArenaParams, ComparisonParams, DpoParams, PromotionParams, RetrievalParams


@dataclass(frozen=True)
class EvaluateConfig(StageConfig):
    """05_evaluate's parameters (their help: the notebook's parameters cell)."""

    seed: int
    domain: str
    taxonomy: str
    cache_dir: str
    eval_limit: int
    include_base: bool
    gen_batch_size: int
    max_new_tokens: int
    constrained: bool
    reuse_generations: bool
    comparisons: ComparisonParams
    zero_result_guard: bool
    zero_result_floor: float
    candidate: str
    baseline: str
    promotion: PromotionParams
    threads: int
    openai_base_url: str
    retrieval: RetrievalParams
    dpo: DpoParams
    pair_sources: str
    arena: ArenaParams
    drift_schedule: str
    drift_per_cycle: int

    @property
    def traffic_sources(self) -> tuple[str, ...]:
        return tuple(s.strip() for s in self.pair_sources.split(",") if s.strip())


@dataclass
class Evaluation:
    """What the steps share: the stage, its inputs, and what earlier steps produced.

    ``candidate`` starts as the configured one; the drift step may replace it by the better of the retrained and
    the continued candidate. ``answers`` holds every scored variant's answers in the order they were made.
    """

    st: Any
    cfg: EvaluateConfig
    tax: Any
    dom: Any
    ft: Any
    items: pd.DataFrame
    eval_items: pd.DataFrame
    candidate: str
    baseline: str
    variants: list[str] = field(default_factory=list)
    adapters: dict[str, str] = field(default_factory=dict)
    answers: dict[str, list[str]] = field(default_factory=dict)
    gen_seconds: dict[str, float] = field(default_factory=dict)
    gen: Any = None
    grammar: Any = None
    guard: dict = field(default_factory=dict)
    gold_cache: dict = field(default_factory=dict)
    cycle: int = 1
    store: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def local(self) -> bool:
        """Whether the models are decoded here (local LoRA adapters), not on a provider's server."""
        return self.ft.backend == "local-lora"

    @property
    def refusal_ids(self) -> list[str]:
        return self.tax.decline_ids

    @property
    def labels(self) -> list[str]:
        return [self.tax.solvable_id, *self.refusal_ids]

    @property
    def texts(self) -> list[str]:
        return self.eval_items["text"].tolist()

    def heads(self) -> dict:
        """The decision heads of the variants decoded so far (none on a provider's server)."""
        return self.gen.heads_ if self.gen is not None else {}

    def generate(self, texts: list[str], variant: str, **kw) -> list[str]:
        """``variant``'s answers to ``texts`` with the stage's decoding settings (``kw`` overrides them)."""
        kw = {"batch_size": self.cfg.gen_batch_size, "max_new_tokens": self.cfg.max_new_tokens,
              "system_prompt": self.ft.system_prompt, **kw}
        return self.gen.generate(texts, variant=variant, **kw)

    def per_item(self, seconds: float) -> float:
        return round(seconds / max(len(self.eval_items), 1), 3)

    def keep_generations(self) -> None:
        """Writes the decodes this run reused or made as its ``generations`` artifact (a later cycle reuses them)
        and records ``generations_reused`` and ``generations_decoded``."""
        memo = self.gen.memo_ if self.gen is not None else None
        if memo is None:
            return
        self.st.write("generations", memo.frame())
        self.st.metric("generations_reused", memo.reused)
        self.st.metric("generations_decoded", memo.decoded)


def lineage_memo(st) -> Any:
    """A :class:`~flywheel_lib.evaluation.memo.GenerationMemo` holding every ``generations`` artifact of the
    lineage before this run (empty in a first cycle)."""
    from flywheel_lib.evaluation.memo import GenerationMemo
    from flywheel_lib.flywheel import lineage_chain

    memo, runs = GenerationMemo(), []
    if st.parent is not None:
        for run in lineage_chain(st.parent):
            if run.exists("generations"):
                memo.add_frame(run.read("generations"), source=f"run {run.run_id}: generations")
                runs.append(run.run_id)
    st.note("generation_memo", {"runs": runs, "entries": len(memo)})
    return memo


def open_evaluation(st, cfg: EvaluateConfig) -> Evaluation:
    """The eval items (a seeded, label-stratified sample with ``eval_limit``) and what 04 trained."""
    from flywheel_lib import load_taxonomy
    from flywheel_lib.domains import get_domain
    from flywheel_lib.evaluation import select_eval_items
    from flywheel_lib.training.record import read_finetune

    ft = read_finetune(st)
    items = st.read("items", contract="items")
    eval_items = select_eval_items(items, limit=cfg.eval_limit, seed=cfg.seed)
    st.metric("n_eval", len(eval_items))
    return Evaluation(st=st, cfg=cfg, tax=load_taxonomy(cfg.taxonomy), dom=get_domain(cfg.domain), ft=ft,
                      items=items, eval_items=eval_items, candidate=cfg.candidate, baseline=cfg.baseline,
                      variants=list(ft.variants))


def _timed(ev: Evaluation, name: str, make) -> None:
    """``name``'s answers, and its decoding seconds where every answer was decoded here (none reused)."""
    memo = ev.gen.memo_ if ev.gen is not None else None
    before, t0 = memo.reused if memo is not None else 0, time.perf_counter()
    ev.answers[name] = make()
    if memo is None or memo.reused == before:
        ev.gen_seconds[name] = time.perf_counter() - t0


def _deployed_baseline(ev: Evaluation) -> None:
    """A later cycle: the model deployed last cycle is the baseline to beat; from cycle 3 the lineage's first model
    is decoded too (scored on the drift slice)."""
    from flywheel_lib.flywheel import lineage_chain

    st = ev.st
    prev, ev.adapters["deployed_prev"] = st.parent.deployed_model()
    first_run = lineage_chain(st.parent)[0]
    if first_run.run_id != st.parent.run_id:
        ev.adapters["first_cycle"] = first_run.deployed_model()[1]
    ev.variants = ev.variants + ["deployed_prev"]
    ev.baseline = "deployed_prev"
    st.note("baseline", {"variant": "deployed_prev", "parent_run": st.parent.run_id, "parent_variant": prev})
    print(f"baseline: {prev!r} deployed in {st.parent.run_id}")


def generate_variants(ev: Evaluation) -> Evaluation:
    """Every variant's answers to the eval items (the base model first with ``include_base``), timed.

    Local adapters decode under the answer grammar with ``constrained``; a variant with a decision head lets the
    head decide, with the zero-result guard where set (``<candidate>_noguard``: the same answers with the guard
    undone). In a lineage's first cycle (or with ``compare_every_cycle``) the candidate is decoded once more without
    the grammar (``<candidate>_free``) and without its head (``<candidate>_nohead``). With ``reuse_generations``
    a prompt an adapter already decoded in the lineage is answered from the lineage's ``generations`` artifacts
    (:mod:`flywheel_lib.evaluation.memo`). A provider's models are asked on its server.
    """
    from flywheel_lib.evaluation import BASE_VARIANT, VariantGenerator, openai_generate
    from flywheel_lib.evaluation.constrained import answer_grammar

    st, cfg, ft = ev.st, ev.cfg, ev.ft
    if not ev.local:
        for v in ev.variants:
            _timed(ev, v, lambda v=v: openai_generate(ft.variants[v].model_ref, ev.texts,
                                                      base_url=cfg.openai_base_url or None,
                                                      system_prompt=ft.system_prompt))
        return ev
    ev.adapters = {v: st.view().adapter(v) for v in ev.variants}
    if st.parent is not None:
        _deployed_baseline(ev)
    ev.grammar = answer_grammar(ev.dom, ev.refusal_ids) if cfg.constrained else None
    st.note("decoder", "constrained (answer grammar)" if ev.grammar else "free")
    ev.guard = dict(execute=ev.dom.execute, zero_result_floor=cfg.zero_result_floor) if cfg.zero_result_guard else {}
    ev.gen = VariantGenerator(ft.base_model, ev.adapters, cache_dir=cfg.cache_dir, threads=cfg.threads,
                              grammar=ev.grammar, memo=lineage_memo(st) if cfg.reuse_generations else None,
                              **ev.guard)
    n_guarded = {}
    for v in ([BASE_VARIANT] if cfg.include_base else []) + ev.variants:
        _timed(ev, v, lambda v=v: ev.generate(ev.texts, v))
        if v in ev.gen.heads_ and cfg.zero_result_guard:
            n_guarded[v] = len(ev.gen.guarded_[v])
            if v == ev.candidate:  # the same answers with the guard undone: its effect, at no extra decoding
                ev.answers[f"{ev.candidate}_noguard"] = ev.gen.unguarded(v, ev.answers[v])
    if n_guarded:
        st.note("zero_result_guard", {"floor": cfg.zero_result_floor, "guarded": n_guarded})
        for v, n in n_guarded.items():
            st.metric(f"zero_result_guarded_{v}", n)
    compare = cfg.comparisons.every_cycle or st.parent is None
    if not compare and (cfg.comparisons.decoders or cfg.comparisons.heads):
        st.note("comparisons", f"skipped in a later cycle (parent run {st.parent.run_id}): compare_every_cycle is off")
    if ev.grammar and compare and cfg.comparisons.decoders and ev.candidate in ev.variants:
        _timed(ev, f"{ev.candidate}_free", lambda: ev.generate(ev.texts, ev.candidate, constrained=False))
    if ev.gen.heads_:
        st.note("decision_heads", {v: h.summary() for v, h in ev.gen.heads_.items()})
    if compare and cfg.comparisons.heads and ev.candidate in ev.gen.heads_:
        _timed(ev, f"{ev.candidate}_nohead", lambda: ev.generate(ev.texts, ev.candidate, decide=False))
    ev.keep_generations()
    return ev


def score_answers(ev: Evaluation, answers: dict[str, list[str]]) -> pd.DataFrame:
    """Each answer scored by execution against its item's gold (one row per variant and item)."""
    from flywheel_lib.evaluation import score_predictions

    return pd.concat([score_predictions(ev.eval_items, a, variant=v, domain=ev.dom, refusal_ids=ev.refusal_ids,
                                        solvable_id=ev.tax.solvable_id, gold_cache=ev.gold_cache)
                      for v, a in answers.items()], ignore_index=True)


@dataclass
class Scores:
    """Scored answers: one prediction row per variant and item, the metrics with Wilson intervals, the candidate's
    confusion matrix, the per-category recall, and one outcome row per variant and item for the paired tests."""

    predictions: pd.DataFrame
    metrics: pd.DataFrame
    confusion: pd.DataFrame
    recall: pd.DataFrame
    outcomes: pd.DataFrame

    def table(self, order: list[str] | None = None) -> pd.DataFrame:
        """The metrics as ``value [lo, hi]`` cells, one row per variant."""
        m = self.metrics
        cells = m.assign(cell=m.apply(lambda r: f"{r.value:.3f} [{r.lo:.3f}, {r.hi:.3f}]" if r.n else "-", axis=1))
        out = cells.pivot(index="variant", columns="metric", values="cell")
        return out.reindex(order) if order is not None else out

    def recall_table(self, labels: list[str], order: list[str]) -> pd.DataFrame:
        r = self.recall
        cells = r.assign(cell=r.apply(lambda r: f"{r.recall:.2f} [{r.lo:.2f}, {r.hi:.2f}] ({r.k}/{r.n})" if r.n else "-",
                                      axis=1))
        return cells.pivot(index="category", columns="variant", values="cell").reindex(index=labels, columns=order)


def score_variants(ev: Evaluation) -> Scores:
    """Scores every variant's answers; writes ``predictions``, ``eval_metrics`` and ``category_recall`` and records
    every metric (the candidate's pass rate, refusal recall and false-refusal rate as headlines), the seconds per
    item of each decode, and the candidate's per-category recall."""
    from flywheel_lib.evaluation import category_recall, compute_metrics, confusion, item_outcomes

    st, cfg, tax = ev.st, ev.cfg, ev.tax
    predictions = score_answers(ev, ev.answers)
    st.write("predictions", predictions, contract="predictions")
    for v, s in ev.gen_seconds.items():
        st.metric(f"generate_seconds_per_item_{v}", ev.per_item(s))
    metrics = compute_metrics(predictions, solvable_id=tax.solvable_id, alpha=cfg.promotion.alpha)
    st.write("eval_metrics", metrics)
    _record_metrics(st, metrics, headline_for=ev.candidate)
    shown = ev.candidate if ev.candidate in ev.answers else ev.variants[-1]
    conf = confusion(predictions, shown, solvable_id=tax.solvable_id, labels=ev.labels)
    recall = category_recall(predictions, solvable_id=tax.solvable_id, categories=ev.labels, alpha=cfg.promotion.alpha)
    st.write("category_recall", recall)
    for r in recall[recall["variant"] == ev.candidate].itertuples():
        if r.n:
            st.metric(f"recall_{r.category}_{ev.candidate}", round(float(r.recall), 4))
    return Scores(predictions, metrics, conf, recall, item_outcomes(predictions, solvable_id=tax.solvable_id))


HEADLINE_METRICS = ("pass_rate", "refusal_recall", "false_refusal_rate")
"""The candidate's metrics on the run's index, each with its 95% Wilson interval (``<key>_lo``, ``<key>_hi``)."""


def _record_metrics(st, metrics: pd.DataFrame, headline_for: str | None = None) -> None:
    def r4(x) -> float | None:
        return None if pd.isna(x) else round(float(x), 4)

    for r in metrics.itertuples():
        key, headline = f"{r.metric}_{r.variant}", r.variant == headline_for and r.metric in HEADLINE_METRICS
        st.metric(key, r4(r.value), headline=headline)
        if headline:
            st.metric(f"{key}_lo", r4(r.lo))
            st.metric(f"{key}_hi", r4(r.hi))


COMPARISON_COLUMNS = ["metric", "a", "b", "n", "rate_a", "rate_b", "diff", "a_only", "b_only", "p_value"]


def seed_comparisons(ev: Evaluation, scores: Scores) -> dict[str, pd.DataFrame]:
    """The method's two McNemar tables (production model vs curated, naive merge vs curated) on the same items;
    writes ``comparisons`` and records their p-values and differences."""
    from flywheel_lib.evaluation import manifest_metrics, seed_tables

    st = ev.st
    tables = seed_tables(scores.outcomes)
    if tables:
        st.write("comparisons", pd.concat([t.assign(table=n) for n, t in tables.items()], ignore_index=True))
    for k, v in manifest_metrics(scores.metrics, tables).items():
        if k.startswith(("p_pass_rate_", "diff_pass_rate_")):
            st.metric(k, round(v, 6), headline=k.startswith("p_pass_rate_"))
    if "naive_vs_curated" in tables:
        t = tables["naive_vs_curated"].set_index("metric")
        st.metric("curated_minus_naive_refusal_accuracy", float(t.loc["refusal_accuracy", "diff"]), headline=True)
        st.metric("curated_minus_naive_pass_rate", float(t.loc["pass_rate", "diff"]), headline=True)
    return tables


def policy_comparisons(ev: Evaluation, scores: Scores) -> dict[str, pd.DataFrame]:
    """McNemar of each other gate policy's variant (``curated_<policy>``, 03's ``train_policies``) against the
    candidate; records the pass-rate p-value and difference of each."""
    from flywheel_lib.evaluation import compare_variants

    scored = set(scores.outcomes["variant"])
    out = {}
    for v in (v for v in ev.ft.variants if v.startswith("curated_")):
        if v in scored and ev.candidate in scored:
            t = compare_variants(scores.outcomes, v, ev.candidate)
            out[v] = t
            pr = t.set_index("metric").loc["pass_rate"]
            ev.st.metric(f"p_pass_rate_{ev.candidate}_vs_{v}", round(float(pr["p_value"]), 6), headline=True)
            ev.st.metric(f"diff_pass_rate_{ev.candidate}_vs_{v}", round(float(pr["diff"]), 4))
    return out

