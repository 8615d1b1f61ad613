"""Several reviewers per item: who gets what, their answers back, how far they agree, and one label per item.

1. :func:`assign_reviewers` gives every row of the review file (audit rows included) to ``k`` distinct reviewers,
   balanced (loads differ by at most one, pairs spread evenly) and seeded; :func:`export_assigned` writes one CSV
   and one Label Studio tasks file per reviewer, each in the review file's order.
2. :func:`read_answers` reads filled files back (:func:`review_files`: a file, a folder or a glob) into the long
   answers table ``item_id, reviewer, label, output, comment, audit, source_file``: one row per reviewer and item,
   every answer kept (a Label Studio project with overlap gives several annotations per task: each is a row).
3. :func:`agreement`: Cohen's kappa for each pair of reviewers on the items both answered, and over all items
   Krippendorff's alpha (nominal; any number of answers per item) and Fleiss' kappa (on the items with the most
   common number of answers), each with a 95% percentile bootstrap interval over items.
4. :class:`ReviewAggregator` resolves each item by a stated rule: ``majority`` (a label chosen by more than half of
   the item's answers), ``unanimous`` (every answer the same) or ``dawid_skene`` (Dawid & Skene 1979 EM over one
   confusion matrix per reviewer; a label whose posterior reaches ``min_posterior``). An item the rule cannot settle
   is *requeued*: left unlabelled and listed by :func:`requeue_file` for another round. ``reviewed()`` gives the
   resolved items in :func:`~flywheel_lib.curation.review.import_review`'s shape, so the decision tree, the audit
   and the training sets take them as one human decision per item.

References: J. Cohen (1960), "A coefficient of agreement for nominal scales", *Educational and Psychological
Measurement* 20(1):37-46. J. L. Fleiss (1971), "Measuring nominal scale agreement among many raters",
*Psychological Bulletin* 76(5):378-382. K. Krippendorff (2004), *Content Analysis: An Introduction to Its
Methodology*, 2nd ed., ch. 11; K. Krippendorff (2011), "Computing Krippendorff's alpha-reliability".

>>> a = pd.DataFrame({"item_id": ["x", "x", "y", "y"], "reviewer": ["ann", "bo", "ann", "bo"],
...                   "label": ["solvable", "solvable", "ambiguous", "solvable"]})
>>> ReviewAggregator("majority").fit(a).status_.tolist()
['resolved', 'requeued']
"""

from __future__ import annotations

import glob
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from ..taxonomy import Taxonomy
from ._votes import is_missing
from .review import REVIEW_COLUMNS, ReviewError, export_review, import_review, label_studio_answer, label_studio_tasks

__all__ = ["RESOLUTIONS", "ANSWER_COLUMNS", "reviewer_names", "assign_reviewers", "export_assigned", "review_files",
           "read_answers", "cohen_kappa", "fleiss_kappa", "krippendorff_alpha", "Agreement", "agreement",
           "ReviewAggregator", "requeue_file"]

RESOLUTIONS = ("majority", "unanimous", "dawid_skene")
"""How several answers to one item become one label (``review_resolution``)."""

ANSWER_COLUMNS = ["item_id", "reviewer", "label", "output", "comment", "audit", "source_file"]
"""The long answers table: one row per reviewer and item."""


# --- assignment and export -----------------------------------------------------------------------------------
def reviewer_names(reviewers: list | tuple, k: int) -> list[str]:
    """The reviewers' names: ``reviewers`` as given, or ``reviewer_1 .. reviewer_k`` where none are named."""
    if k < 1:
        raise ValueError(f"reviewers_per_item {k}: expected at least 1")
    names = [str(r).strip() for r in reviewers] or [f"reviewer_{i + 1}" for i in range(k)]
    if any(not n for n in names) or len(set(names)) != len(names):
        raise ValueError(f"reviewers {names}: names must be non-empty and distinct")
    if len(names) < k:
        raise ValueError(f"reviewers_per_item {k} but only {len(names)} reviewers named ({', '.join(names)})")
    return names


def assign_reviewers(review_file: pd.DataFrame, reviewers: list[str], *, k: int, seed: int = 0) -> pd.DataFrame:
    """``item_id, reviewer``: each item of ``review_file`` (in its order) to ``k`` distinct reviewers.

    Greedy and balanced: an item goes to the ``k`` least-loaded reviewers, ties broken by how often a candidate
    already shares items with those chosen (so every pair meets, which pairwise kappa needs), then by a seeded
    random order. Loads end within one item of each other.
    """
    reviewers = reviewer_names(reviewers, k)
    rng = np.random.default_rng(seed)
    load = dict.fromkeys(reviewers, 0)
    met = Counter()
    rows = []
    for iid in pd.unique(review_file["item_id"]):
        noise = dict(zip(reviewers, rng.random(len(reviewers))))
        chosen: list[str] = []
        for _ in range(k):
            cand = [r for r in reviewers if r not in chosen]
            best = min(cand, key=lambda r: (load[r], sum(met[frozenset((r, c))] for c in chosen), noise[r]))
            chosen.append(best)
        for a, b in combinations(chosen, 2):
            met[frozenset((a, b))] += 1
        for r in chosen:
            load[r] += 1
            rows.append((iid, r))
    return pd.DataFrame(rows, columns=["item_id", "reviewer"])


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "reviewer"


def export_assigned(review_file: pd.DataFrame, assignment: pd.DataFrame, folder: str | Path, *, taxonomy: Taxonomy,
                    stem: str = "review_queue") -> dict[str, dict[str, Path]]:
    """One review file per reviewer: ``<stem>.<reviewer>.csv`` (``reviewer`` filled in) and
    ``<stem>.<reviewer>.label_studio.json`` (+ its labelling config), each reviewer's rows in the file's order.
    Returns ``{reviewer: {csv, label_studio, label_config}}``."""
    folder = Path(folder)
    out = {}
    for name, g in assignment.groupby("reviewer", sort=False):
        mine = review_file[review_file["item_id"].isin(set(g["item_id"]))].copy()
        mine["reviewer"] = name
        base = folder / f"{stem}.{_slug(str(name))}"
        out[str(name)] = export_review(mine[REVIEW_COLUMNS], Path(f"{base}.csv"), taxonomy=taxonomy,
                                       label_studio_path=Path(f"{base}.label_studio.json"))
    return out


# --- answers back --------------------------------------------------------------------------------------------
def review_files(spec: str | Path) -> list[Path]:
    """The filled review files ``spec`` names: one file, every ``.csv`` and ``.json`` in a folder, or a glob."""
    p = Path(spec)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in (".csv", ".json"))
    elif p.exists():
        files = [p]
    else:
        files = sorted(Path(f) for f in glob.glob(str(spec)))
    if not files:
        raise ReviewError(f"review file {spec} does not exist (a file, a folder of CSV / JSON files, or a glob)")
    return files


def _label_studio_answers(p: Path, taxonomy: Taxonomy) -> list[dict]:
    rows = []
    for k, (t, data) in enumerate(label_studio_tasks(p)):
        for a in t.get("annotations") or []:
            res = label_studio_answer(a)
            if a.get("was_cancelled") or is_missing(res["label"]):
                continue
            if res["label"] not in taxonomy.ids:
                raise ReviewError(f"{p}: task {k}: label {res['label']!r} is not a category of taxonomy "
                                  f"{taxonomy.name!r} (known: {', '.join(taxonomy.ids)})")
            audit = str(data.get("audit", "")).strip().lower() in ("1", "1.0", "true", "yes")
            rows.append({"item_id": data["item_id"], "reviewer": res["reviewer"] or p.stem, "label": res["label"],
                         "output": res["output"], "comment": res["note"], "audit": audit, "source_file": str(p)})
    return rows


def read_answers(paths, *, taxonomy: Taxonomy) -> pd.DataFrame:
    """Every answer in ``paths`` (filled CSVs and Label Studio JSON exports) as the long answers table
    (:data:`ANSWER_COLUMNS`). A CSV row's reviewer is its ``reviewer`` cell, else the file's name; a Label Studio
    annotation's is ``completed_by``, else the file's name. A reviewer who answers an item twice keeps the last
    answer if it is the same label, and is an error naming both files if not."""
    rows = []
    for p in map(Path, paths):
        if p.suffix.lower() == ".json":
            rows += _label_studio_answers(p, taxonomy)
            continue
        df = import_review(p, taxonomy=taxonomy)
        for r in df.itertuples(index=False):
            rows.append({"item_id": r.item_id, "reviewer": r.reviewer if not is_missing(r.reviewer) else p.stem,
                         "label": r.human_label, "output": r.human_output, "comment": r.note, "audit": bool(r.audit),
                         "source_file": str(p)})
    out = pd.DataFrame(rows, columns=ANSWER_COLUMNS)
    seen: dict[tuple, tuple] = {}
    for r in out.itertuples(index=False):
        key = (r.item_id, r.reviewer)
        if key in seen and seen[key][0] != r.label:
            raise ReviewError(f"{r.source_file}: reviewer {r.reviewer!r} labels item {r.item_id!r} {r.label!r}, but "
                              f"{seen[key][0]!r} in {seen[key][1]}")
        seen[key] = (r.label, r.source_file)
    out["audit"] = out["audit"].astype(bool)
    return out.drop_duplicates(["item_id", "reviewer"], keep="last").reset_index(drop=True)


# --- agreement -----------------------------------------------------------------------------------------------
def cohen_kappa(a, b) -> float:
    """Cohen's (1960) kappa of two raters' labels on the same items; NaN where chance agreement is 1.

    >>> round(cohen_kappa(["y"] * 25 + ["n"] * 25, ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15), 3)
    0.4
    """
    a, b = np.asarray(a, dtype=object), np.asarray(b, dtype=object)
    if not len(a):
        return float("nan")
    cats = sorted(set(a) | set(b))
    po = float((a == b).mean())
    pe = float(sum((a == c).mean() * (b == c).mean() for c in cats))
    return float("nan") if pe >= 1 else (po - pe) / (1 - pe)


def fleiss_kappa(counts) -> float:
    """Fleiss' (1971) kappa from an ``items x categories`` count table with the same number of raters per item."""
    n = np.asarray(counts, dtype=float)
    m = n.sum(axis=1)
    if not len(n) or m[0] < 2 or (m != m[0]).any():
        return float("nan")
    p_i = ((n * n).sum(axis=1) - m) / (m * (m - 1))
    p_j = n.sum(axis=0) / m.sum()
    pe = float((p_j ** 2).sum())
    return float("nan") if pe >= 1 else (float(p_i.mean()) - pe) / (1 - pe)


def krippendorff_alpha(counts) -> float:
    """Krippendorff's alpha for nominal data from an ``items x categories`` count table (items with fewer than two
    answers are not pairable and drop out): ``1 - D_o / D_e`` from the coincidence matrix."""
    n = np.asarray(counts, dtype=float)
    m = n.sum(axis=1)
    n = n[m >= 2]
    m = m[m >= 2]
    total = m.sum()
    if total < 2:
        return float("nan")
    nc = n.sum(axis=0)
    de = total * total - (nc * nc).sum()
    if de <= 0:
        return float("nan")
    do = ((m * m - (n * n).sum(axis=1)) / (m - 1)).sum()
    return float(1 - (total - 1) * do / de)


def _interval(stat, x, rng, n_boot: int) -> tuple[float, float]:
    if len(x) < 2 or n_boot < 1:
        return float("nan"), float("nan")
    vals = np.array([stat(x[rng.integers(0, len(x), len(x))]) for _ in range(n_boot)])
    vals = vals[np.isfinite(vals)]
    if len(vals) < n_boot / 2:  # most resamples undefined (e.g. one category): no interval
        return float("nan"), float("nan")
    return float(np.quantile(vals, 0.025)), float(np.quantile(vals, 0.975))


@dataclass(frozen=True)
class Agreement:
    """How far the reviewers agree, with 95% percentile bootstrap intervals over items."""

    alpha: float
    """Krippendorff's alpha (nominal) over every item with at least two answers."""
    alpha_lo: float
    alpha_hi: float
    kappa_fleiss: float
    """Fleiss' kappa over the items with ``fleiss_raters`` answers (the most common number, at least two)."""
    kappa_fleiss_lo: float
    kappa_fleiss_hi: float
    n_items: int
    """Items with at least two answers."""
    fleiss_items: int
    fleiss_raters: int
    pairs: pd.DataFrame = field(repr=False)
    """``reviewer_a, reviewer_b, n, kappa, lo, hi``: Cohen's kappa on the items both answered."""

    def as_dict(self) -> dict:
        d = {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in vars(self).items()
             if k != "pairs"}
        d["pairs"] = self.pairs.astype(object).where(self.pairs.notna(), None).to_dict("records")
        return d


def agreement(answers: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0) -> Agreement:
    """Agreement between the reviewers of a long answers table (``item_id, reviewer, label``)."""
    rng = np.random.default_rng(seed)
    wide = answers.pivot(index="item_id", columns="reviewer", values="label")
    cats = sorted(answers["label"].dropna().unique())
    counts = np.stack([(wide == c).sum(axis=1).to_numpy() for c in cats], axis=1) if cats else np.zeros((0, 0))
    m = counts.sum(axis=1) if len(cats) else np.zeros(0)
    pairable = counts[m >= 2]
    alpha = krippendorff_alpha(pairable)
    a_lo, a_hi = _interval(krippendorff_alpha, pairable, rng, n_boot)
    sizes = Counter(m[m >= 2].tolist())
    raters = int(max(sizes, key=lambda s: (sizes[s], s))) if sizes else 0
    full = counts[m == raters] if raters else np.zeros((0, len(cats)))
    fk = fleiss_kappa(full)
    f_lo, f_hi = _interval(fleiss_kappa, full, rng, n_boot)
    pairs = []
    for a, b in combinations(sorted(wide.columns), 2):
        both = wide[[a, b]].dropna().to_numpy(dtype=object)
        k = cohen_kappa(both[:, 0], both[:, 1]) if len(both) else float("nan")
        lo, hi = _interval(lambda x: cohen_kappa(x[:, 0], x[:, 1]), both, rng, n_boot)
        pairs.append({"reviewer_a": a, "reviewer_b": b, "n": len(both), "kappa": k, "lo": lo, "hi": hi})
    return Agreement(alpha, a_lo, a_hi, fk, f_lo, f_hi, int(len(pairable)), int(len(full)), raters,
                     pd.DataFrame(pairs, columns=["reviewer_a", "reviewer_b", "n", "kappa", "lo", "hi"]))


# --- resolution ----------------------------------------------------------------------------------------------
class ReviewAggregator:
    """Several answers per item to one label, by ``rule`` (one of :data:`RESOLUTIONS`).

    ``majority``: the label more than half of the item's answers chose. ``unanimous``: every answer the same.
    ``dawid_skene``: Dawid & Skene (1979), reviewers as annotators with a confusion matrix each
    (:class:`~flywheel_lib.curation.consensus.DawidSkene`); the most probable label where its posterior reaches
    ``min_posterior``. An item with fewer than ``min_answers`` answers is ``pending`` (left for the reviewers still
    to answer); one the rule cannot settle is ``requeued``; both are left unlabelled.

    Fitted: ``labels_`` (``None`` unless resolved), ``status_`` (``resolved | requeued | pending``), ``support_``
    (the label's share of answers, or its posterior), ``table_`` (``item_id, label, status, support, n_answers,
    answers, audit``; ``answers`` as JSON ``{reviewer: label}``).
    """

    def __init__(self, rule: str = "majority", *, min_answers: int = 1, min_posterior: float = 0.5):
        self.rule = rule
        self.min_answers = min_answers
        self.min_posterior = min_posterior

    def fit(self, answers: pd.DataFrame) -> ReviewAggregator:
        if self.rule not in RESOLUTIONS:
            raise ValueError(f"review_resolution {self.rule!r}: expected one of {', '.join(RESOLUTIONS)}")
        missing = {"item_id", "reviewer", "label"} - set(answers.columns)
        if missing:
            raise ValueError(f"answers table lacks {sorted(missing)} (expected {', '.join(ANSWER_COLUMNS)})")
        self.answers_ = answers
        groups = {iid: g for iid, g in answers.groupby("item_id", sort=False)}
        posterior = self._dawid_skene(answers) if self.rule == "dawid_skene" and len(answers) else None
        rows = []
        for iid, g in groups.items():
            votes = Counter(g["label"])
            top, n_top = votes.most_common(1)[0]
            n = len(g)
            support = n_top / n
            if n < self.min_answers:
                status, label = "pending", None
            elif self.rule == "majority":
                status, label = ("resolved", top) if n_top * 2 > n else ("requeued", None)
            elif self.rule == "unanimous":
                status, label = ("resolved", top) if n_top == n else ("requeued", None)
            else:
                p = posterior.loc[iid]
                top, support = p.idxmax(), float(p.max())
                status, label = ("resolved", top) if support >= self.min_posterior else ("requeued", None)
            audit = bool(g["audit"].astype(bool).any()) if "audit" in g.columns else False
            rows.append({"item_id": iid, "label": label, "status": status, "support": round(float(support), 4),
                         "n_answers": n, "answers": json.dumps(dict(zip(g["reviewer"], g["label"]))), "audit": audit})
        self.table_ = pd.DataFrame(rows, columns=["item_id", "label", "status", "support", "n_answers", "answers",
                                                  "audit"])
        idx = pd.Index(self.table_["item_id"], name="item_id")
        self.labels_ = pd.Series([r["label"] for r in rows], index=idx, dtype=object)
        self.status_ = pd.Series(self.table_["status"].to_numpy(), index=idx, dtype=object)
        self.support_ = pd.Series(self.table_["support"].to_numpy(), index=idx, dtype=float)
        return self

    @staticmethod
    def _dawid_skene(answers: pd.DataFrame) -> pd.DataFrame:
        from .consensus import DawidSkene

        v = answers[["item_id", "reviewer", "label"]].rename(columns={"reviewer": "judge", "label": "category"})
        for c in ("reason_key", "rationale", "model", "prompt_hash", "tokens_in", "tokens_out", "cost_usd",
                  "latency_s", "cached", "error"):
            v[c] = None
        return DawidSkene().fit(v).probas_

    @property
    def requeued_(self) -> list:
        return self.table_.loc[self.table_["status"] == "requeued", "item_id"].tolist()

    def reviewed(self) -> pd.DataFrame:
        """The resolved items as :func:`~flywheel_lib.curation.review.import_review` gives them: ``item_id,
        human_label, human_output, note, reviewer, row, audit, source_file``. The output is the most common one
        among the answers that chose the label; ``reviewer`` names them, ``note`` gathers their comments."""
        a = self.answers_
        rows = []
        for r in self.table_[self.table_["status"] == "resolved"].itertuples(index=False):
            agree = a[(a["item_id"] == r.item_id) & (a["label"] == r.label)]
            outs = [o for o in agree.get("output", pd.Series(dtype=object)) if not is_missing(o)]
            notes = [f"{w}: {c}" for w, c in zip(agree["reviewer"], agree.get("comment", [None] * len(agree)))
                     if not is_missing(c)]
            files = sorted({str(f) for f in agree.get("source_file", []) if not is_missing(f)})
            rows.append({"item_id": r.item_id, "human_label": r.label,
                         "human_output": Counter(outs).most_common(1)[0][0] if outs else None,
                         "note": "; ".join(notes) or None, "reviewer": "+".join(map(str, agree["reviewer"])),
                         "row": None, "audit": bool(r.audit), "source_file": ";".join(files) or None})
        out = pd.DataFrame(rows, columns=["item_id", "human_label", "human_output", "note", "reviewer", "row",
                                          "audit", "source_file"])
        out["audit"] = out["audit"].astype(bool)
        return out


def requeue_file(aggregator: ReviewAggregator, review_file: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    """The requeued items as a review file (:data:`~flywheel_lib.curation.review.REVIEW_COLUMNS`), ``note`` saying
    what each reviewer answered; an item not in ``review_file`` gets a row from ``items`` (its request only)."""
    t = aggregator.table_.set_index("item_id")
    ids = aggregator.requeued_
    known = review_file[review_file["item_id"].isin(ids)].drop_duplicates("item_id")
    rest = [i for i in ids if i not in set(known["item_id"])]
    mine = items[items["item_id"].isin(rest)].drop_duplicates("item_id").set_index("item_id")
    extra = pd.DataFrame([{c: "" for c in REVIEW_COLUMNS} | {
        "item_id": i, "text": mine["text"].get(i, ""), "source": mine["source"].get(i, ""), "action": "requeue",
        "rule": "reviewers_disagree", "votes": "{}", "reasons": "{}", "entropy": 0.0, "priority": 0,
        "audit": int(t.at[i, "audit"])} for i in rest], columns=REVIEW_COLUMNS)
    out = pd.concat([known[REVIEW_COLUMNS], extra], ignore_index=True) if len(extra) else known[REVIEW_COLUMNS].copy()
    out["note"] = [f"reviewers disagree ({aggregator.rule}): "
                   + ", ".join(f"{w}={lab}" for w, lab in json.loads(t.at[i, "answers"]).items())
                   for i in out["item_id"]]
    for c in ("human_label", "human_output", "reviewer"):
        out[c] = ""
    return out.reset_index(drop=True)
