"""The taxonomy lab: edit a category, re-judge the calibration hold-out, see what moved.

A researcher changes a category's description, rule or examples (:meth:`Taxonomy.edited`), the panel re-judges the
calibration hold-out with the new taxonomy (through the verdict cache: only prompts that changed cost a call), and
:func:`compare_versions` lays the two versions side by side: kappa per judge, confusion between categories, and the
items whose verdict moved. Saving writes a new taxonomy version file.

An edit is scored twice, each figure labelled: on the seed's calibration hold-out (out of fold, as 01_calibrate
judges it) and, where the run holds a hidden truth for production (generated data, or a mapped ``true_label``), on
a seeded slice of production rows no judge fits on (:func:`production_slice`). The lab never writes into the run
it edits: :func:`start_lab_run` starts a new run folder from it (its finished stages reused, as
``flywheel run --from``), and :func:`finish_lab_run` records the lab's outputs in that run's manifest and writes its
``index.html``.

    before = judge_holdout(tax, panel_path, fewshot, holdout, cache_dir=...)
    after = judge_holdout(tax.edited("ambiguous", "add_positive", ["customers who are sort of loyal"]), ...)
    report = compare_versions(before, after, holdout.set_index("item_id")["label"], labels=tax.ids)
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .curation.calibration import confusion_table, judge_report
from .taxonomy import Taxonomy

__all__ = ["judge_holdout", "compare_versions", "LabReport", "fit_pool", "production_slice", "scores_table",
           "start_lab_run", "finish_lab_run", "LAB_STAGE", "SEED_SLICE", "PRODUCTION_SLICE"]

LAB_STAGE = "taxonomy_lab"
"""The stage name the lab records under in its run."""
SEED_SLICE = "seed, out of fold"
"""How the seed hold-out's figures are labelled."""
PRODUCTION_SLICE = "production slice, against the hidden truth"
"""How the production slice's figures are labelled."""


def fit_pool(fewshot: pd.DataFrame, tax: Taxonomy, exclude=()) -> pd.DataFrame:
    """What offline judges fit on: the seed's few-shot pool plus the taxonomy's own examples.

    ``exclude``: texts that must never be fitted on (the calibration hold-out); an example equal to one of them
    after normalisation is left out, so no hold-out item reaches a judge through the taxonomy either.
    """
    from .data.stats import match_key

    ex = tax.example_items()
    banned = {match_key(t) for t in exclude}
    ex = ex[~ex["text"].map(match_key).isin(banned)]
    return pd.concat([fewshot, ex[[c for c in ex.columns if c in fewshot.columns or c == "reason_key"]]],
                     ignore_index=True)


def judge_holdout(tax: Taxonomy, panel_path: str, fewshot: pd.DataFrame, holdout: pd.DataFrame, *, domain=None,
                  cache_dir: str = "outputs/cache", progress: bool = False,
                  folds: pd.DataFrame | None = None) -> pd.DataFrame:
    """The panel's verdicts on the hold-out under taxonomy ``tax`` (cached per prompt).

    With ``folds`` (01_calibrate's ``calibration_split`` of a cross-fitted run: ``item_id, fold``), ``fewshot`` is
    the whole seed and each hold-out item is judged out of fold, as in 01_calibrate."""
    from .judges import load_panel

    if folds is not None:
        from .judges.crossfit import cross_fit

        return cross_fit(lambda: load_panel(panel_path, taxonomy=tax, domain=domain), fewshot, folds,
                         judge_ids=holdout["item_id"], pool=lambda tr, te: fit_pool(tr, tax, exclude=te["text"]),
                         cache_dir=cache_dir, progress=progress).verdicts
    pan = load_panel(panel_path, taxonomy=tax, domain=domain).fit(fit_pool(fewshot, tax, exclude=holdout["text"]))
    return pan.judge(holdout, cache_dir=cache_dir, progress=progress)


@dataclass
class LabReport:
    kappa: pd.DataFrame
    """One row per judge: kappa and accuracy before and after, and the change."""
    moved: pd.DataFrame
    """Items whose verdict changed: item_id, judge, before, after, gold."""
    confusion_before: dict
    confusion_after: dict


def compare_versions(before: pd.DataFrame, after: pd.DataFrame, gold: pd.Series, *, labels: list[str]) -> LabReport:
    """Kappa per judge, confusion per judge and the moved items between two verdict tables on the same items."""
    rb = judge_report(before, gold, labels=labels).set_index("judge")
    ra = judge_report(after, gold, labels=labels).set_index("judge")
    kappa = pd.DataFrame({"kappa_before": rb["kappa"], "kappa_after": ra["kappa"],
                          "accuracy_before": rb["accuracy"], "accuracy_after": ra["accuracy"]})
    kappa["kappa_change"] = kappa["kappa_after"] - kappa["kappa_before"]
    m = before.merge(after, on=["item_id", "judge"], suffixes=("_before", "_after"))
    changed = m["category_before"].fillna("(abstain)") != m["category_after"].fillna("(abstain)")
    moved = m.loc[changed, ["item_id", "judge", "category_before", "category_after"]].rename(
        columns={"category_before": "before", "category_after": "after"})
    moved["gold"] = moved["item_id"].map(gold)
    judges = sorted(set(before["judge"]))
    conf_b = {j: confusion_table(before, gold, j, labels=labels) for j in judges}
    conf_a = {j: confusion_table(after, gold, j, labels=labels) for j in judges}
    return LabReport(kappa.reset_index(), moved.reset_index(drop=True), conf_b, conf_a)


def production_slice(items: pd.DataFrame, truth: pd.DataFrame | None, n: int, *, seed: int = 7
                     ) -> tuple[pd.DataFrame, pd.Series, str]:
    """A seeded sample of ``n`` production rows with a hidden truth, the truth of each, and a sentence.

    ``truth``: the run's ``truth`` artifact (``item_id, true_label, ...``). The rows come from ``items`` (what the
    judges see), never from the truth table; no judge fits on production, so the slice is held out. Empty, with
    the reason in the sentence, where production carries no truth (user data without a mapped ``true_label``) or
    ``n`` is 0.
    """
    empty = items.iloc[:0], pd.Series(dtype=object, name="true_label")
    if n <= 0:
        return *empty, "production slice not scored: production_slice is 0"
    if truth is None or "true_label" not in truth.columns:
        return *empty, "production slice not scored: production rows carry no hidden truth (user data)"
    t = truth.dropna(subset=["true_label"]).drop_duplicates("item_id").set_index("item_id")["true_label"]
    prod = items[(items["source"] == "production") & items["item_id"].isin(t.index)]
    if prod.empty:
        return *empty, "production slice not scored: no production row has a hidden truth"
    rows = prod.sample(n=min(n, len(prod)), random_state=seed).sort_values("item_id").reset_index(drop=True)
    return rows, t.reindex(rows["item_id"]).rename("true_label"), (
        f"production slice: {len(rows):,} of {len(prod):,} production rows with a hidden truth (seed {seed})")


def scores_table(seed_report: LabReport, production_report: LabReport | None = None, *, n_seed: int = 0,
                 n_production: int = 0) -> pd.DataFrame:
    """Kappa per judge before and after the edit, one row per judge and slice, the slice named in words
    (:data:`SEED_SLICE`, :data:`PRODUCTION_SLICE`)."""
    parts = [seed_report.kappa.assign(slice=SEED_SLICE, n=n_seed)]
    if production_report is not None:
        parts.append(production_report.kappa.assign(slice=PRODUCTION_SLICE, n=n_production))
    out = pd.concat(parts, ignore_index=True)
    return out[["slice", "judge", "n", "kappa_before", "kappa_after", "kappa_change", "accuracy_before",
                "accuracy_after"]]


def start_lab_run(run_dir, *, run_id: str | None = None):
    """A new run folder for the lab's outputs, started from ``run_dir`` as ``flywheel run --from`` starts one.

    The edited run's finished stages are reused (their artifacts hard-linked, their records copied, their manifest
    entries marked ``reused``), the manifest names it as the parent, and a ``taxonomy_lab`` stage entry is opened;
    the edited run is only read. Returns the new folder."""
    from pathlib import Path

    from .paths import project_root, runs_dir
    from .runner.execute import new_run_id
    from .runner.manifest import Manifest, environment, now, runner_identity
    from .runner.resume import _reuse

    parent = Path(run_dir).resolve()
    pm = Manifest.load(parent).data
    rid = run_id or new_run_id(f"{pm.get('recipe') or 'run'}-lab", (parent.name, now()))
    out = runs_dir() / rid
    (out / "notebooks").mkdir(parents=True, exist_ok=False)
    m = Manifest(out, {
        "run_id": rid, "recipe": pm.get("recipe"), "recipe_path": pm.get("recipe_path"),
        "recipe_sha256": pm.get("recipe_sha256"),
        "description": f"taxonomy lab on run {parent.name}", "status": "running", "created_at": now(),
        "finished_at": None, "duration_s": None, "runner": runner_identity(), "overrides": [],
        "stage_order": list(pm.get("stage_order", [])) + [LAB_STAGE],
        "parent": {"from_run": parent.name}, "params_passed": {}, "params_in_effect": {},
        **environment(project_root()),
        "stages": [{"name": LAB_STAGE, "status": "running", "started_at": now()}],
    })
    m.data["parent"]["reused_stages"] = _reuse(parent, out, m, [LAB_STAGE])
    m.save()
    return out


def finish_lab_run(run_dir, *, params: dict | None = None, status: str = "succeeded"):
    """Record the lab in its run: the files it wrote as the stage's outputs, its parameters, its metrics and notes
    folded into the manifest; then write the run's ``index.html``. Returns the index path."""
    from pathlib import Path

    from .runner.manifest import Manifest, now
    from .runner.report import write_index

    run_dir = Path(run_dir)
    m = Manifest.load(run_dir)
    entry = m.stage(LAB_STAGE)
    reused = {o for s in m.data["stages"] if s["name"] != LAB_STAGE for o in s.get("outputs", [])}
    wrote = sorted(p.relative_to(run_dir).as_posix() for sub in ("artifacts", "figures")
                   for p in (run_dir / sub).rglob("*") if p.is_file())
    entry.update(status=status, ended_at=now(), outputs=[o for o in wrote if o not in reused])
    if params is not None:
        m.data["params_passed"][LAB_STAGE] = m.data["params_in_effect"][LAB_STAGE] = dict(params)
    m.refresh_records()
    m.data.update(status=status, finished_at=now())
    m.save()
    return write_index(run_dir, m.data)
