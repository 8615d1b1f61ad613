"""05_evaluate's loop steps: the example store, the drift slice, promotion, and the levers between fine-tunes.

:func:`grow_store` appends this cycle's curated rows to the timestamped example store; :func:`score_drift_slice`
scores the deployed model, the candidates and the store-consulting head on held-out instances of every scenario
traffic has shown; :func:`promote` applies the rule that weighs both slices; :func:`retrieval_fewshot` (lever 1 at
the decoder), :func:`preference_dpo` (lever 4) and :func:`arena` (pairwise battles, Bradley-Terry ratings) run the
levers, and :func:`score_levers` scores them beside the fine-tuned variants.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from flywheel_lib.stages.evaluate import COMPARISON_COLUMNS, Evaluation, Scores, _record_metrics, score_answers

__all__ = ["grow_store", "DriftResult", "score_drift_slice", "promote", "Levers", "retrieval_fewshot",
           "preference_dpo", "score_levers", "arena", "COMPARISON_COLUMNS"]


def grow_store(ev: Evaluation) -> pd.DataFrame:
    """The parent cycle's example store unchanged plus this cycle's curated rows (with timestamp, cycle, source,
    taxonomy version); written as ``example_store``."""
    from flywheel_lib.levers.cycle import cycle_of, update_store

    ev.cycle = cycle_of(ev.st)
    store = update_store(ev.st, ev.tax, cycle=ev.cycle)
    ev.st.write("example_store", store)
    ev.st.metric("example_store_rows", len(store))
    ev.st.metric("example_store_added", int((store["cycle"] == ev.cycle).sum()))
    ev.store = store
    return store


@dataclass
class DriftResult:
    """The drift slice of a later cycle: its items, the scored report (None in a first cycle or on a provider's
    server), per scenario whether the candidate fixed what the deployed model failed, and the candidate choice."""

    items: pd.DataFrame
    report: Any = None
    patterns: pd.DataFrame | None = None
    choice: dict | None = None

    @property
    def outcomes(self) -> pd.DataFrame | None:
        return self.report.outcomes if self.report is not None else None


def score_drift_slice(ev: Evaluation, scores: Scores) -> DriftResult:
    """A later cycle: the deployed model, the candidates (retrained, and continued from the deployed model), the
    lineage's first model and the oracle where trained, and the deployed model whose head consults the store
    (``deployed_store``), on the drift slice; keeps the better candidate (``candidate_choice``) and records the
    slice's metrics."""
    from flywheel_lib.evaluation.drift import (
        choose_candidate,
        evaluate_slices,
        scenario_patterns,
        significant,
        slice_manifest_metrics,
    )
    from flywheel_lib.flywheel.slices import drift_slice_for
    from flywheel_lib.levers import ExampleRetriever
    from flywheel_lib.levers.cycle import consulted_rows
    from flywheel_lib.levers.store_head import StoreConsultedHead

    st, cfg = ev.st, ev.cfg
    candidates = [c for c in (ev.candidate, f"{ev.candidate}_continued") if c in ev.answers]
    out = DriftResult(drift_slice_for(st, ev.dom, schedule=cfg.drift_schedule, seed=cfg.seed,
                                      n_per_cycle=cfg.drift_per_cycle))
    if len(out.items) and ev.local and "deployed_prev" in ev.answers:
        st.write("drift_items", out.items)
        extra = [v for v in ("first_cycle", "oracle") if v in ev.adapters]
        slices: dict[str, dict] = {"deployed_prev": {}, **{c: {} for c in candidates}, **{v: {} for v in extra}}
        consulted = consulted_rows(ev.store, scope=cfg.retrieval.scope, admit=cfg.retrieval.admit)
        st.metric("store_rows_consulted", len(consulted))
        if "deployed_prev" in ev.heads() and len(consulted):
            slices["deployed_store"] = {"variant": "deployed_prev", "head": StoreConsultedHead(
                ev.heads()["deployed_prev"], ExampleRetriever(consulted, k=5), min_score=cfg.retrieval.min_score,
                min_share=cfg.retrieval.min_share, overrule=cfg.retrieval.overrule)}
        out.report = evaluate_slices(ev.gen, out.items, slices, domain=ev.dom, taxonomy=ev.tax, alpha=cfg.promotion.alpha,
                                     batch_size=cfg.gen_batch_size, max_new_tokens=cfg.max_new_tokens,
                                     system_prompt=ev.ft.system_prompt)
        st.write("drift_predictions", out.report.predictions, contract="predictions")
        st.note("deployed_store", out.report.notes.get("deployed_store"))
        ev.keep_generations()
    if len(candidates) > 1:  # keep the better of the two candidates, and say which
        ev.candidate, out.choice = choose_candidate(scores.outcomes, out.report, candidates)
        st.note("candidate_choice", out.choice)
        print(f"candidate: {ev.candidate} (higher {out.choice['by']} pass rate: {out.choice['pass_rates']})")
    if out.report is not None:
        out.patterns = scenario_patterns(out.report.predictions, out.items, deployed="deployed_prev",
                                         candidate=ev.candidate)
        st.write("drift_patterns", out.patterns)
    else:
        print(f"no drift slice: {len(out.items)} items (a first cycle has none), backend {ev.ft.backend}")
    newest = set(out.items.loc[out.items["scenario_cycle"] == out.items["scenario_cycle"].max(), "item_id"]) \
        if len(out.items) and "scenario_cycle" in out.items else None
    for k, v in slice_manifest_metrics(scores.outcomes, out.report, candidate=ev.candidate, newest=newest).items():
        st.metric(k, significant(k, v), headline=k in ("diff_drift_candidate_vs_deployed",
                                                        "pass_rate_deployed_store_drift"))
    return out


def promote(ev: Evaluation, scores: Scores, drift: DriftResult) -> dict:
    """The promotion decision (note ``promotion``, metric ``promoted``): the candidate replaces the baseline only if
    it beats it on pass rate without a significant rise in false refusals; in a later cycle with a drift slice, if
    it beats the deployed model on the drift slice and stays within ``non_inferiority_margin`` on the original
    eval. Also records the loop's gain since its first cycle (and the share of the oracle's gap closed)."""
    from flywheel_lib.evaluation import decide_promotion
    from flywheel_lib.evaluation.drift import decide_promotion_slices, significant, versus_first_cycle

    st, cfg, cand, base = ev.st, ev.cfg, ev.candidate, ev.baseline
    if st.parent is None:
        st.note("baseline", {"variant": base})
    if cand in ev.answers and base in ev.answers:
        decision = decide_promotion_slices(scores.outcomes, drift.outcomes, candidate=cand, baseline=base,
                                           alpha=cfg.promotion.alpha, margin=cfg.promotion.non_inferiority_margin,
                                           false_refusal_tolerance=cfg.promotion.false_refusal_tolerance)
        if cfg.promotion.false_refusal_tolerance > 0:  # what the strict rule (any significant rise blocks) would have decided
            strict = decide_promotion(scores.outcomes, candidate=cand, baseline=base, alpha=cfg.promotion.alpha)
            st.note("promotion_strict", {k: strict[k] for k in ("promoted", "winner", "reason")})
            print(("strict rule would promote: " if strict["promoted"] else "strict rule would keep the baseline: ")
                  + strict["reason"])
    else:
        decision = {"promoted": False, "candidate": cand, "baseline": base, "winner": base,
                    "reason": f"{cand!r} or {base!r} was not evaluated (variants: {list(ev.answers)})"}
    st.note("promotion", decision)
    st.metric("promoted", bool(decision["promoted"]), headline=True)
    for k, v in versus_first_cycle(drift.report, decision["winner"]).items():
        st.metric(k, significant(k, v), headline=k.startswith("diff"))
    print(("PROMOTED: " if decision["promoted"] else "KEPT BASELINE: ") + decision["reason"])
    return decision


@dataclass
class Levers:
    """The levers' answers on the eval items (``retrieval_fewshot``, ``curated_dpo``) and what they need later."""

    answers: dict[str, list[str]] = field(default_factory=dict)
    fewshot_model: str = ""
    retriever: Any = None
    dpo_gen: Any = None
    pairs: pd.DataFrame | None = None


def retrieval_fewshot(ev: Evaluation, levers: Levers) -> Levers:
    """Lever 1 at the decoder: the deployed model (the baseline in a first cycle), not retrained, prompted with the
    ``retrieval_k`` stored examples nearest each request; records its seconds per item and prompt-length ratio."""
    from flywheel_lib.evaluation import BASE_VARIANT
    from flywheel_lib.levers import ExampleRetriever
    from flywheel_lib.levers.cycle import retrieval_generate

    st, cfg = ev.st, ev.cfg
    deployed = "deployed_prev" if "deployed_prev" in ev.answers else ev.baseline
    levers.fewshot_model = model = {"deployed": deployed}.get(cfg.retrieval.model, cfg.retrieval.model)
    if not (cfg.retrieval.k > 0 and ev.local and (model in ev.answers or model == BASE_VARIANT)):
        st.note("retrieval_fewshot", f"skipped: retrieval.k={cfg.retrieval.k}, backend {ev.ft.backend}, "
                                     f"model {model!r}")
        return levers
    levers.retriever = ExampleRetriever(ev.store, k=cfg.retrieval.k)
    fs = retrieval_generate(ev.gen, model, ev.eval_items, levers.retriever, batch_size=cfg.gen_batch_size,
                            max_new_tokens=cfg.max_new_tokens, system_prompt=ev.ft.system_prompt)
    levers.answers["retrieval_fewshot"] = fs["answers"]
    ev.keep_generations()
    st.note("retrieval_fewshot", {"model": model, "k": cfg.retrieval.k, "store_rows": len(ev.store)})
    st.metric("generate_seconds_per_item_retrieval_fewshot", round(fs["seconds_per_item"], 3))
    st.metric("prompt_chars_ratio_retrieval_fewshot", round(fs["prompt_chars_ratio"], 2))
    bare = (f"{ev.gen_seconds[model] / max(len(ev.eval_items), 1):.2f} s" if model in ev.gen_seconds
            else "answers reused from the lineage, not timed")
    print(f"retrieval_fewshot: {model!r} + {cfg.retrieval.k} examples, {fs['seconds_per_item']:.2f} s a request "
          f"(the bare model: {bare}), prompts {fs['prompt_chars_ratio']:.1f}x as long")
    return levers


def preference_dpo(ev: Evaluation, levers: Levers) -> Levers:
    """Lever 4, from the second cycle: preference pairs from the judged traffic of the deployed model (written as
    ``preference_pairs``, the OpenAI JSONL and a ``datasets`` folder), and with ``dpo_steps`` and enough usable pairs
    the ``curated_dpo`` variant: DPO on top of the candidate's adapter, decoded on the eval items."""
    from flywheel_lib.levers import build_preference_pairs, known_queries, to_hf_folder, to_openai_jsonl
    from flywheel_lib.levers import dpo_pairs as select_dpo_pairs

    st, cfg, ft = ev.st, ev.cfg, ev.ft
    n_pairs, n_dpo_pairs, usable = 0, 0, None
    if st.parent is not None and st.exists("consensus"):
        pairs = build_preference_pairs(ev.items, st.read("consensus", contract="consensus"), taxonomy=ev.tax,
                                       domain=ev.dom, queries=known_queries(ev.store, solvable_id=ev.tax.solvable_id),
                                       sources=cfg.traffic_sources)
        n_pairs, levers.pairs = len(pairs), pairs
        st.write("preference_pairs", pairs)
        to_openai_jsonl(pairs, st.path("preference_pairs", "jsonl"), system_prompt=ft.system_prompt)
        if n_pairs:
            to_hf_folder(pairs, st.path("preference_pairs_hf", ""))
    st.metric("n_preference_pairs", n_pairs, headline=True)
    if n_pairs:
        usable = select_dpo_pairs(levers.pairs, cfg.dpo.pairs, has_head=ev.local and ev.candidate in ev.heads())
        n_dpo_pairs = len(usable)
        st.metric("n_dpo_pairs", n_dpo_pairs)
    if not (cfg.dpo.steps > 0 and n_dpo_pairs >= max(cfg.dpo.min_pairs, 1) and ev.local
            and ev.candidate in ft.variants):
        st.note("curated_dpo", f"skipped: parent run {st.parent.run_id if st.parent else None}, {n_pairs} pairs "
                               f"({n_dpo_pairs} for DPO under dpo.pairs={cfg.dpo.pairs!r}, at least "
                               f"{cfg.dpo.min_pairs} needed), dpo.steps={cfg.dpo.steps}, backend {ft.backend}")
        return levers
    from flywheel_lib.evaluation import VariantGenerator
    from flywheel_lib.levers.dpo import DPOConfig, train_dpo

    assert usable is not None
    train_pairs = usable.sample(cfg.dpo.max_pairs, random_state=cfg.seed) if n_dpo_pairs > cfg.dpo.max_pairs else usable
    dpo = train_dpo(train_pairs, DPOConfig(base_model=ft.base_model, beta=cfg.dpo.beta, max_steps=cfg.dpo.steps,
                                           batch_size=cfg.dpo.batch_size, lr=cfg.dpo.lr, seed=cfg.seed,
                                           cache_dir=cfg.cache_dir, threads=cfg.threads,
                                           system_prompt=ft.system_prompt),
                    st.path("models/curated_dpo", ""), adapter=st.view().adapter(ev.candidate))
    st.note("curated_dpo", dpo.metrics)
    for k in ("loss_before", "loss_after", "reward_accuracy_after", "seconds"):
        st.metric(f"dpo_{k}", round(float(dpo.metrics[k]), 4))
    levers.dpo_gen = VariantGenerator(ft.base_model, {"curated_dpo": dpo.model_ref}, cache_dir=cfg.cache_dir,
                                      threads=cfg.threads, grammar=ev.grammar, **ev.guard)
    t0 = time.perf_counter()
    levers.answers["curated_dpo"] = levers.dpo_gen.generate(
        ev.texts, variant="curated_dpo", batch_size=cfg.gen_batch_size, max_new_tokens=cfg.max_new_tokens,
        system_prompt=ft.system_prompt)
    st.metric("generate_seconds_per_item_curated_dpo", ev.per_item(time.perf_counter() - t0))
    print(f"DPO on {len(train_pairs)} pairs, {cfg.dpo.steps} steps in {dpo.metrics['seconds']:.0f} s: loss "
          f"{dpo.metrics['loss_before']:.3f} -> {dpo.metrics['loss_after']:.3f}")
    return levers


def score_levers(ev: Evaluation, scores: Scores, levers: Levers) -> dict[str, pd.DataFrame]:
    """Scores the levers' answers beside the fine-tuned variants (``predictions`` and ``eval_metrics`` rewritten
    with them, ``scores`` extended in place) and compares each lever with the model it starts from (McNemar)."""
    from flywheel_lib.evaluation import compare_variants, compute_metrics, item_outcomes

    if not levers.answers:
        return {}
    st, tax = ev.st, ev.tax
    lever_preds = score_answers(ev, levers.answers)
    lever_metrics = compute_metrics(lever_preds, solvable_id=tax.solvable_id, alpha=ev.cfg.promotion.alpha)
    _record_metrics(st, lever_metrics)
    scores.predictions = pd.concat([scores.predictions, lever_preds], ignore_index=True)
    scores.metrics = pd.concat([scores.metrics, lever_metrics], ignore_index=True)
    st.write("predictions", scores.predictions, contract="predictions")
    st.write("eval_metrics", scores.metrics)
    scores.outcomes = item_outcomes(scores.predictions, solvable_id=tax.solvable_id)
    starts = {"retrieval_fewshot": levers.fewshot_model, "curated_dpo": ev.candidate}
    scored = set(scores.outcomes["variant"])
    return {f"{starts[v]} vs {v}": compare_variants(scores.outcomes, starts[v], v)
            for v in levers.answers if starts[v] in scored}


@dataclass
class Arena:
    """Pairwise battles on judged traffic, the judge's position bias, and Bradley-Terry ratings on the Elo scale."""

    battles: pd.DataFrame
    bias: pd.DataFrame
    ratings: pd.DataFrame


def arena(ev: Evaluation, levers: Levers, scores: Scores | None = None, drift: DriftResult | None = None,
          ) -> Arena | None:
    """From the second cycle: every model battles on ``arena.n`` requests; the offline pairwise judge compares two
    answers in both orders; ratings with bootstrap intervals, anchored so the deployed model keeps its rating.

    ``arena.requests``: ``heldout`` (default) samples the original eval and the drift slice, whose labels and
    queries are the truth, and reuses the answers scored there (``scores``, ``drift``): the models that answered
    every sampled request battle. ``traffic`` samples the judged traffic and decodes every model and lever anew.
    Returns None (and notes why) when it does not run."""
    from flywheel_lib.levers import OfflinePairwiseJudge, judge_battles, position_bias
    from flywheel_lib.levers.cycle import arena_requests, heldout_battles, rate_models, retrieval_generate

    st, cfg = ev.st, ev.cfg
    run = st.parent is not None and cfg.arena.n > 0 and ev.local
    req: pd.DataFrame = pd.DataFrame()
    answers: dict[str, list[str]] = {}
    if run and cfg.arena.requests == "heldout" and scores is not None:
        slices = {"original": (ev.eval_items, scores.predictions)}
        if drift is not None and drift.report is not None:
            slices["drift"] = (drift.items, drift.report.predictions)
        req, answers = heldout_battles(slices, n=cfg.arena.n, seed=cfg.seed)
    elif run and cfg.arena.requests == "traffic" and st.exists("consensus"):
        req = arena_requests(ev.items, st.read("consensus", contract="consensus"), ev.store, n=cfg.arena.n,
                             seed=cfg.seed, sources=cfg.traffic_sources)
    if len(req) < 2 or (cfg.arena.requests == "heldout" and len(answers) < 2):
        st.note("arena", f"skipped: parent run {st.parent.run_id if st.parent else None}, arena.n={cfg.arena.n}, "
                         f"requests={cfg.arena.requests}: {len(req)} requests, {len(answers)} models, "
                         f"backend {ev.ft.backend}")
        return None
    if cfg.arena.requests == "traffic":
        reqs = req["text"].tolist()
        kw = dict(batch_size=cfg.gen_batch_size, max_new_tokens=cfg.max_new_tokens,
                  system_prompt=ev.ft.system_prompt)
        answers = {v: ev.gen.generate(reqs, variant=v, **kw) for v in ev.variants}
        if "retrieval_fewshot" in levers.answers:
            answers["retrieval_fewshot"] = retrieval_generate(ev.gen, levers.fewshot_model, req, levers.retriever,
                                                              **kw)["answers"]
        if "curated_dpo" in levers.answers:
            answers["curated_dpo"] = levers.dpo_gen.generate(reqs, variant="curated_dpo", **kw)
        ev.keep_generations()
    st.note("arena", {"requests": cfg.arena.requests, "n": len(req), "models": sorted(answers),
                      "slices": ({str(k): int(v) for k, v in req["slice"].value_counts().items()}
                                 if "slice" in req else None)})
    battles = judge_battles(req, answers, [OfflinePairwiseJudge(domain=ev.dom, taxonomy=ev.tax)])
    st.write("arena_battles", battles)
    bias = position_bias(battles)
    for r in bias.itertuples():
        st.metric(f"position_bias_{r.judge}", round(float(r.position_bias), 4))
    ratings = rate_models(battles, cycle=ev.cycle, parent=st.parent, n_boot=cfg.arena.boot, seed=cfg.seed)
    st.write("arena", ratings)
    for r in ratings.itertuples():
        st.metric(f"elo_{r.model}", round(r.elo, 1), headline=(r.model in (ev.candidate, "deployed_prev")))
        st.metric(f"elo_lo_{r.model}", round(r.elo_lo, 1))
        st.metric(f"elo_hi_{r.model}", round(r.elo_hi, 1))
    st.metric("arena_requests", len(req))
    return Arena(battles, bias, ratings)


def run(st, cfg) -> Evaluation:
    """Every step of 05_evaluate in the notebook's order, without Jupyter (no figures)."""
    from flywheel_lib.stages import evaluate as steps

    ev = steps.open_evaluation(st, cfg)
    steps.generate_variants(ev)
    scores = steps.score_variants(ev)
    steps.seed_comparisons(ev, scores)
    steps.policy_comparisons(ev, scores)
    grow_store(ev)
    drift = score_drift_slice(ev, scores)
    promote(ev, scores, drift)
    levers = preference_dpo(ev, retrieval_fewshot(ev, Levers()))
    score_levers(ev, scores, levers)
    arena(ev, levers, scores, drift)
    return ev
