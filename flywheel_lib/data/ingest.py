"""The 00_data stage's logic: gather production, seed and eval items, check them, and scrub personal data.

``gather_items`` builds the items table from the domain's generator (``source_kind="generate"``) or from user
files (``source_kind="files"``: per-source files by a column mapping, or one labelled ``data_path`` that is split
into seed / eval / production). ``scrub_items`` replaces personal data in ``text`` by typed placeholders. Both
raise before anything is written, so the notebook's single atomic write is all-or-nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from ..records import ITEMS, check_table
from ..taxonomy import Taxonomy, TaxonomyError
from .loaders import DataError, DoorReport, file_map, load_items, split_labelled
from .pii import scrub_frame, span_recall

__all__ = ["gather_items", "gather_from_parent", "scrub_items", "order_columns", "split_truth", "TRUTH_COLUMNS"]

TRUTH_COLUMNS = ("true_label", "gold_output", "family", "conflict_with", "annotation_error", "planted")
"""Hidden truth a generator (or a labelled file) knows: kept out of ``items`` so no judge can read it."""


def order_columns(items: pd.DataFrame) -> pd.DataFrame:
    """Contract columns first, then the rest in their order of appearance."""
    rest = [c for c in items.columns if c not in ITEMS]
    return items[[*ITEMS, *rest]].reset_index(drop=True)


def gather_items(*, domain, taxonomy: Taxonomy, source_kind: str = "generate", seed: int = 7,
                 sizes: Mapping[str, Any] | None = None, production_path: str = "", seed_path: str = "",
                 eval_path: str = "", data_path: str = "", column_map: Mapping[str, Any] | None = None,
                 split_fractions: Mapping[str, float] | None = None, max_text_chars: int = 0,
                 text_overflow: str = "truncate", report: DoorReport | None = None) -> pd.DataFrame:
    """The items table for one run, checked against the items contract and the taxonomy.

    Files: ``column_map`` is one map for every file or keyed per file (see :func:`~.loaders.file_map`). A
    production file's hidden truth is its mapped ``true_label`` column, else its mapped ``label``; its ``label``
    then becomes the logged success (the taxonomy's solvable id). ``max_text_chars`` / ``text_overflow`` bound
    ``text`` (see :func:`~.loaders.load_items`); truncations go to ``report``.
    """
    if source_kind == "generate":
        parts = domain.generate(seed=seed, **dict(sizes or {}))
        frames = [parts[k] for k in ("production", "seed", "eval") if k in parts]
        where = f"{domain.name} generator (seed {seed})"
    elif source_kind == "files":
        from ..stage import resolve_path

        door = dict(workload_id=domain.name, max_text_chars=max_text_chars, text_overflow=text_overflow,
                    report=report)
        frames = []
        if data_path:
            loaded = load_items(resolve_path(data_path), file_map(column_map, "data"), "seed", taxonomy, **door)
            frames.append(split_labelled(loaded, taxonomy, seed=seed, fractions=split_fractions))
        for source, path in (("production", production_path), ("seed", seed_path), ("eval", eval_path)):
            if not path:
                continue
            m = file_map(column_map, source)
            df = load_items(resolve_path(path), m, source, taxonomy, **door)
            if source == "production":
                if "true_label" not in m and "label" in m:  # the truth was put in production's label
                    df["true_label"] = df["label"]
                df["label"] = taxonomy.solvable_id
            frames.append(df)
        if not frames:
            raise DataError("source_kind 'files' needs data_path or at least one of production_path, seed_path, "
                            "eval_path")
        where = ", ".join(p for p in (data_path, production_path, seed_path, eval_path) if p)
    else:
        raise DataError(f"source_kind must be 'generate' or 'files', not {source_kind!r}")
    items = order_columns(pd.concat(frames, ignore_index=True))
    dup = items["item_id"].duplicated(keep=False)
    if dup.any():
        first = items.loc[dup, ["item_id", "source"]].head(4).to_dict("records")
        raise DataError(f"{where}: item ids repeat across sources, e.g. {first}")
    check_table(items, "items", where)
    for col in ("label", "true_label"):
        if col in items.columns:
            try:
                taxonomy.check_labels(items[col].tolist(), where=f"{where} (column {col})",
                                      ids=items["item_id"].tolist())
            except TaxonomyError as e:
                raise DataError(str(e)) from None
    return items


def scrub_items(items: pd.DataFrame, *, enabled: bool = True) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Scrub ``text`` (when ``enabled``) and measure the scrubber on planted spans.

    Returns ``(items, report, recall)``: ``report`` has one row per PII type (rows and spans found),
    ``recall`` the scrubber's recall per type against the ``pii_spans`` ground truth (empty when there is none).
    The ``pii_spans`` column (which holds the raw planted values) is dropped from the returned table either way;
    ``pii_found`` keeps the types found per row, never the values.
    """
    recall = pd.DataFrame()
    if "pii_spans" in items.columns:
        recall = span_recall(items["text"].tolist(), items["pii_spans"].tolist())
    if enabled:
        out, report = scrub_frame(items, "text")
    else:
        out, report = items.copy(), pd.DataFrame(columns=["type", "rows", "spans"])
        out["pii_found"] = "[]"
    return out.drop(columns=["pii_spans"], errors="ignore"), report, recall


def split_truth(items: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Move the hidden truth out of the items table.

    Returns ``(items, truth)``: ``truth`` has ``item_id`` plus the :data:`TRUTH_COLUMNS` present, and the gold
    ``reason_key`` of production rows (production logs carry no annotation; seed and eval rows keep theirs, it is
    the human annotation). Later stages read ``truth`` only to *measure* (judge accuracy on production, the
    traffic simulator), never to decide.
    """
    cols = [c for c in TRUTH_COLUMNS if c in items.columns]
    truth = items[["item_id", *cols]].copy()
    out = items.drop(columns=cols)
    if "reason_key" in items.columns:
        truth["reason_key"] = items["reason_key"]
        prod = out["source"].isin(["production", "traffic"])
        out.loc[prod, "reason_key"] = None
    return out, truth


def gather_from_parent(parent, *, sampler, budget: int = 0, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A later cycle's items: the parent's seed and eval rows unchanged, and as production the parent's logged
    traffic (the deployed model's new requests), sampled within ``budget`` (0 takes all) by ``sampler(traffic,
    n, seed=)`` (the flywheel's budget sampler: failure signals first, then the requests most novel against the
    parent's curated corpus, then stratified by what the model did and by workload). ``parent`` is a read-only :class:`~flywheel_lib.stage.RunView`. Returns ``(items, truth)``.
    """
    for name in ("items", "traffic"):
        if not parent.exists(name):
            raise DataError(f"parent run {parent.run_id} has no {name} artifact: run its 00_data and 06_flywheel first")
    old = parent.read("items")
    traffic = parent.read("traffic")
    if 0 < budget < len(traffic) and parent.exists("train_sets"):  # novelty against the corpus the model learnt
        from ..flywheel.sampling import novelty_against

        ts = parent.read("train_sets")
        corpus = ts.loc[ts["variant"] == "curated", "text"] if "variant" in ts else ts["text"]
        traffic = traffic.assign(novelty=novelty_against(traffic["text"], corpus.drop_duplicates()))
    sample = sampler(traffic, budget if budget > 0 else len(traffic), seed=seed)
    production = sample.drop(columns=["sample_reason", "answer", "novelty"], errors="ignore").assign(source="production")
    production["sample_reason"] = sample["sample_reason"].to_numpy()
    keep = old[old["source"].isin(["seed", "eval"])]
    items = order_columns(pd.concat([keep, production], ignore_index=True))
    truths = [parent.read(name) for name in ("truth", "traffic_truth") if parent.exists(name)]
    truth = pd.concat(truths, ignore_index=True) if truths else pd.DataFrame({"item_id": items["item_id"]})
    truth = truth[truth["item_id"].isin(items["item_id"])].drop_duplicates("item_id").reset_index(drop=True)
    check_table(items, "items", f"parent run {parent.run_id}")
    return items, truth
