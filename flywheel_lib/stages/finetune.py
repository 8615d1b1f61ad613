"""04_finetune: one dataset per train-set variant, the same base model fine-tuned on each, decision heads, record.

The steps, in the notebook's order: :func:`open_finetune` (which variants this cycle trains, with the oracle's
rows), :func:`build_datasets`, :func:`train_variants` (and the deployed adapter trained further in a later cycle),
:func:`fit_decision_heads` and :func:`write_record` (``finetune.json``, what 05 and 06 read).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from flywheel_lib.stages import StageConfig
from flywheel_lib.stages.groups import HeadParams, TrainingParams


@dataclass(frozen=True)
class FinetuneConfig(StageConfig):
    """04_finetune's parameters (their help: the notebook's parameters cell)."""

    seed: int
    taxonomy: str
    cache_dir: str
    base_model: str
    variants: list
    compare_every_cycle: bool
    later_variants: list
    continue_from_deployed: bool
    continue_steps: int
    oracle: bool
    drift_schedule: str
    backend: str
    training: TrainingParams
    balanced_rows: bool
    max_per_class: int
    max_refusal_share: float
    refusal_target: str
    head: HeadParams
    threads: int
    openai_model: str
    openai_base_url: str
    openai_epochs: int

    def trainer_options(self) -> dict:
        """The backend's options: the same for every variant, so the only difference between models is the data."""
        if self.backend == "local-lora":
            t = self.training
            return dict(base_model=self.base_model, max_steps=t.max_steps, batch_size=t.batch_size, lr=t.lr,
                        lora_r=t.lora_r, target_modules=(t.lora_targets,), lr_schedule=t.lr_schedule,
                        max_len=t.max_len, seed=self.seed, cache_dir=self.cache_dir, threads=self.threads)
        if self.backend == "openai":
            return dict(base_model=self.openai_model, n_epochs=self.openai_epochs, seed=self.seed,
                        base_url=self.openai_base_url or None)
        raise ValueError(f"backend must be 'local-lora' or 'openai', got {self.backend!r}")


@dataclass
class Finetune:
    """What 04's steps share: the stage, the train sets, the variants to train, and each step's result."""

    st: Any
    cfg: FinetuneConfig
    tax: Any
    train_sets: pd.DataFrame
    variants: list[str]
    datasets: dict = field(default_factory=dict)
    results: dict = field(default_factory=dict)
    continued: dict[str, str] = field(default_factory=dict)
    heads: dict[str, dict] = field(default_factory=dict)

    def folder(self, variant: str):
        return self.st.path(f"models/{variant}", ext="")


def _oracle_rows(st, cfg: FinetuneConfig, train_sets: pd.DataFrame) -> pd.DataFrame:
    """The ceiling: the candidate's rows with the true labels of every cycle's truth table (the capability changes
    in effect by now make old refusals answerable)."""
    from flywheel_lib.curation.datasets import oracle_train_set
    from flywheel_lib.flywheel import lineage_chain

    truths = [st.read("truth")]
    if st.parent is not None:
        truths += [r.read("truth") for r in reversed(lineage_chain(st.parent)) if r.exists("truth")]
    supported: list[str] = []
    if cfg.drift_schedule and st.parent is not None:
        from flywheel_lib.domains.segments.drift import load_drift_schedule
        from flywheel_lib.levers.cycle import cycle_of

        supported = load_drift_schedule(cfg.drift_schedule).capability_changes(upto=cycle_of(st) - 1)["key"].tolist()
    return oracle_train_set(train_sets, truths, variant=(cfg.later_variants or ["curated"])[0], supported=supported)


def open_finetune(st, cfg: FinetuneConfig) -> Finetune:
    """The variants this run trains: a later cycle skips the gate-policy variants (unless ``compare_every_cycle``)
    and trains only ``later_variants``; with ``oracle`` the ceiling's rows are added. Fails naming a variant the
    train sets lack."""
    from flywheel_lib import load_taxonomy

    tax = load_taxonomy(cfg.taxonomy)
    train_sets = st.read("train_sets")
    variants = list(cfg.variants)
    policy_variants = [v for v in variants if v.startswith("curated_")]
    if policy_variants and not cfg.compare_every_cycle and st.parent is not None:
        variants = [v for v in variants if v not in policy_variants]
        st.note("policy_variants", f"{policy_variants} skipped in a later cycle (parent run {st.parent.run_id}): the "
                                   "curation-policy comparison runs in a lineage's first cycle; compare_every_cycle "
                                   "is off")
    if cfg.later_variants and st.parent is not None:
        skipped = [v for v in variants if v not in cfg.later_variants]
        variants = [v for v in variants if v in cfg.later_variants]
        if skipped:
            st.note("later_cycle_variants", f"{skipped} not trained in a later cycle (parent run {st.parent.run_id}): "
                                            "the candidate is compared with the deployed model; "
                                            f"later_variants={cfg.later_variants}")
    if cfg.oracle:
        train_sets = pd.concat([train_sets, _oracle_rows(st, cfg, train_sets)], ignore_index=True)
        variants = [*variants, "oracle"]
    missing = [v for v in variants if v not in set(train_sets["variant"])]
    if missing:
        raise ValueError(f"train_sets has no rows for variants {missing}; it has {sorted(set(train_sets['variant']))}")
    st.note("taxonomy", tax.version_id)
    return Finetune(st, cfg, tax, train_sets, variants)


def build_datasets(f: Finetune) -> pd.DataFrame:
    """Per variant: dedup, cap or class-balanced rows, a stratified split and chat formatting (the same rules for
    every variant), saved as a ``datasets`` folder and OpenAI JSONL. Returns one summary row per variant."""
    from flywheel_lib.training import build_dataset, save_dataset

    cfg, st = f.cfg, f.st
    n_train = cfg.training.max_steps * cfg.training.batch_size if cfg.balanced_rows and cfg.backend == "local-lora" else 0
    for v in f.variants:
        ds = build_dataset(f.train_sets, variant=v, taxonomy=f.tax, val_frac=cfg.training.val_frac, seed=cfg.seed,
                           max_per_class=cfg.max_per_class, max_refusal_share=cfg.max_refusal_share,
                           refusal_target=cfg.refusal_target, n_train=n_train)
        save_dataset(ds, st.path(f"datasets/{v}", ext=""))
        f.datasets[v] = ds
    summary = pd.DataFrame([ds.summary() for ds in f.datasets.values()])
    for r in summary.itertuples():
        st.metric(f"n_train_{r.variant}", int(r.n_train))
        st.metric(f"n_distinct_train_{r.variant}", int(r.n_distinct_train))
        st.metric(f"refusal_share_{r.variant}", float(r.refusal_share))
    return summary


def _train(f: Finetune, variant: str, trainer) -> None:
    t0 = time.perf_counter()
    f.results[variant] = trainer.train(f.datasets[variant], out_dir=f.folder(variant))
    f.st.metric(f"train_seconds_{variant}", round(time.perf_counter() - t0, 1))


def train_variants(f: Finetune) -> pd.DataFrame:
    """The same base model, steps, learning rate and seed for each variant; in a later cycle with
    ``continue_from_deployed`` also ``<candidate>_continued``, the deployed adapter trained further on the candidate's
    rows. Returns one summary row per trained model."""
    from flywheel_lib.training import get_backend

    st, cfg = f.st, f.cfg
    options = cfg.trainer_options()
    trainer = get_backend(cfg.backend, **options)
    for v in f.variants:
        _train(f, v, trainer)
    if cfg.continue_from_deployed and cfg.later_variants and st.parent is not None and cfg.backend == "local-lora":
        cand = cfg.later_variants[0]
        prev_variant, prev_adapter = st.parent.deployed_model()
        v = f"{cand}_continued"
        f.datasets[v] = replace(f.datasets[cand], variant=v)
        steps = cfg.continue_steps or max(1, cfg.training.max_steps // 2)
        _train(f, v, get_backend(cfg.backend, **{**options, "max_steps": steps, "init_adapter": prev_adapter}))
        f.continued[v] = cand
        st.note("continued", {"variant": v, "from": prev_variant, "parent_run": st.parent.run_id, "steps": steps,
                              "rows_of": cand})
    return pd.DataFrame([r.summary() for r in f.results.values()])


def fit_decision_heads(f: Finetune) -> pd.DataFrame | str:
    """With a decision head (``head.kind`` not "none"): one head per variant fitted on its training rows and saved beside its adapter (a
    continued adapter decides with its candidate's head). Returns the heads' figures, or a sentence when none."""
    from flywheel_lib.training.head import DecisionHead, fit_heads

    st, cfg, head = f.st, f.cfg, f.cfg.head
    f.heads = heads = fit_heads(
        {v: f.datasets[v] for v in f.variants}, head.kind, {v: f.folder(v) for v in f.variants},
        backend=cfg.backend, C=head.C, refusal_threshold=head.threshold, solvable_id=f.tax.solvable_id,
        max_false_refusal=head.max_false_refusal, rows=head.rows,
        refusal_share=head.refusal_share or None, seed=cfg.seed, epochs=head.epochs, lr=head.lr,
        members=head.members)
    for v, cand in f.continued.items():  # the continued adapter decides with its candidate's head (the same rows)
        if cand in heads:
            DecisionHead.copy(f.folder(cand), f.folder(v))
            heads[v] = heads[cand]
    for v, h in heads.items():
        st.metric(f"head_val_accuracy_{v}", h["val_accuracy"])
        st.metric(f"head_val_false_refusal_rate_{v}", h["val_false_refusal_rate"])
        st.metric(f"head_fit_seconds_{v}", h["fit_seconds"])
    share = head.refusal_share or next(iter(f.datasets.values())).target_refusal_share
    st.note("decision_head", {"kind": head.kind, "C": head.C, "refusal_threshold": head.threshold,
                              "rows": head.rows, "refusal_share": share,
                              **({"epochs": head.epochs, "lr": head.lr, "members": head.members}
                                 if head.kind == "finetuned" else {}),
                              "max_false_refusal": head.max_false_refusal,
                              "thresholds": {v: h["threshold"] for v, h in heads.items()}} if heads else "none")
    return pd.DataFrame(heads).T if heads else "no decision heads: each adapter decides when to refuse"


def write_record(f: Finetune) -> pd.DataFrame:
    """``training_log`` and ``finetune.json`` (backend, base model, options without secrets, system prompt, target
    format, heads, and per variant its model and dataset); the final loss and throughput per variant. Returns the
    training log."""
    from flywheel_lib.training.record import FinetuneRecord
    from flywheel_lib.training.targets import SYSTEM_PROMPT

    st, cfg, heads = f.st, f.cfg, f.heads
    training_log = pd.concat([r.log for r in f.results.values()], ignore_index=True)
    st.write("training_log", training_log)
    st.write_json("finetune", FinetuneRecord.model_validate({
        "backend": cfg.backend, "base_model": cfg.base_model if cfg.backend == "local-lora" else cfg.openai_model,
        "options": {k: v for k, v in cfg.trainer_options().items() if k != "api_key"},
        "system_prompt": SYSTEM_PROMPT, "target_format": "REFUSE <category>: <sentence> Try: <suggestion> | <query>",
        "decision_head": {"kind": cfg.head.kind, "C": cfg.head.C, "refusal_threshold": cfg.head.threshold,
                          "rows": cfg.head.rows, "n_fit": {v: h["n_fit"] for v, h in heads.items()}} if heads else None,
        "variants": {v: {**r.summary(), **f.datasets[v].summary(), "dataset": f.datasets[v].paths}
                     for v, r in f.results.items()},
    }).model_dump(mode="json"))
    for v, r in f.results.items():
        if r.metrics.get("loss_last") is not None:
            st.metric(f"final_loss_{v}", round(float(r.metrics["loss_last"]), 4), headline=(v == f.variants[-1]))
        if r.metrics.get("tokens_per_s") is not None:
            st.metric(f"tokens_per_s_{v}", r.metrics["tokens_per_s"])
    return training_log


def run(st, cfg: FinetuneConfig) -> Finetune:
    """Every step of 04_finetune in the notebook's order, without Jupyter (no figures)."""
    f = open_finetune(st, cfg)
    for step in (build_datasets, train_variants, fit_decision_heads, write_record):
        step(f)
    return f
