"""Build fine-tuning datasets: dedup, class-aware stratified split, chat formatting, saving.

Input is one variant's rows of the ``train_sets`` artifact: ``item_id, text, label, output, reason_key, variant``.
The steps, each a plain function:

- :func:`dedup` drops exact duplicates (same text after stripping) and near duplicates (same text after folding case,
  accents, punctuation, spacing and filler words such as "please" or "show me") *with the same label and output*.
  Rows that share a text but disagree on the label are kept: that contradiction is what a naive merge is, and the
  experiment must see it. The count of such conflicting groups is returned for the report.
- :func:`split_validation` puts ``val_frac`` of every class into validation (seeded), rounding per class, and never
  takes the last row of a class: a class with a single row stays in training.
- Every seeded draw here (the validation split, :func:`balanced_rows`, :func:`head_rows`) is *stable*
  (:func:`stable_order`): a row's place in the draw comes from a seeded hash of its text, label and output, not from
  its position. A corpus that grows by a few rows (the next flywheel cycle's) keeps the rows it drew before and
  adds only where new rows rank in, so two cycles' models differ by their data (and the training's own noise), not
  by a fresh random draw: in the demo, cycle 1's and cycle 2's curated adapters shared 60 of their 960 rows with a
  positional draw and 937 with this one (README, skill-model section).
- :func:`format_chat` turns rows into chat messages (system, user request, assistant target).
- :func:`save_dataset` writes a Hugging Face ``datasets`` folder (train/validation) and chat JSONL files in the
  format the OpenAI fine-tuning API takes (``{"messages": [...]}`` per line).
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .targets import SYSTEM_PROMPT, format_target

__all__ = ["TRAIN_COLUMNS", "BuiltDataset", "near_duplicate_key", "dedup", "cap_per_class", "cap_refusal_share",
           "balanced_rows", "head_rows", "split_validation", "stable_keys", "stable_order", "row_keys",
           "format_chat", "build_dataset", "save_dataset"]

TRAIN_COLUMNS = ("item_id", "text", "label", "output", "reason_key")

_FILLER = re.compile(
    r"\b(please|pls|can you|could you|would you|i want|i need|i'd like|show me|give me|get me|find me|find|show|"
    r"list|get|me|all|the|a|an|of|my)\b"
)


def near_duplicate_key(text: str) -> str:
    """The near-duplicate key of a request: case, accents, punctuation (not ``$ . % -``), spacing and fillers folded.

    >>> near_duplicate_key("Please show me ALL customers who spent > $500!!")
    'customers who spent $500'
    """
    t = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode().lower()
    t = re.sub(r"[^\w\s$.%-]", " ", t)
    t = _FILLER.sub(" ", t)
    t = re.sub(r"(?<!\d)\.|\.(?!\d)", " ", t)  # keep decimal points only
    return " ".join(t.split())


def _out_key(v) -> str:
    return "" if v is None or (isinstance(v, float) and np.isnan(v)) else " ".join(str(v).split())


def stable_keys(keys, *, seed: int, salt: str = "") -> np.ndarray:
    """A seeded 64-bit hash of every key (``uint64``): the same key gets the same value in any list it is part of.

    Repeats of a key are told apart by their occurrence number (the second copy of a key hashes differently from
    the first), so a list with duplicates still has a strict order. ``salt`` separates independent draws made with
    the same seed (the validation split and the training draw).

    >>> a = stable_keys(["x", "y", "z"], seed=7)
    >>> bool((stable_keys(["z", "new", "x"], seed=7)[[0, 2]] == a[[2, 0]]).all()), bool(a[0] != stable_keys(["x"], seed=8)[0])
    (True, True)
    """
    seen: dict[str, int] = {}
    out = np.empty(len(keys), dtype=np.uint64)
    for i, k in enumerate(keys):
        j = seen[k] = seen.get(k, -1) + 1
        h = hashlib.blake2b(f"{seed}\x1f{salt}\x1f{j}\x1f{k}".encode(), digest_size=8).digest()
        out[i] = int.from_bytes(h, "little")
    return out


def stable_order(keys, *, seed: int, salt: str = "") -> np.ndarray:
    """Positions of ``keys`` sorted by :func:`stable_keys`: a seeded shuffle in which adding or removing keys leaves
    the relative order of the others unchanged.

    >>> stable_order(["a", "b", "c", "d"], seed=7).tolist() == [x for x in stable_order(["a", "b", "c", "d", "e"],
    ...                                                                                     seed=7).tolist() if x != 4]
    True
    """
    return np.argsort(stable_keys(list(keys), seed=seed, salt=salt), kind="stable")


def row_keys(rows: pd.DataFrame) -> list[str]:
    """What a row's stable draw position depends on: its text, label and output (spacing folded), not its id or position
    (rows without a ``text`` column: every column's value)."""
    cols = [c for c in ("text", "label", "output") if c in rows.columns] if "text" in rows.columns else list(rows.columns)
    if not cols:
        return [""] * len(rows)
    parts = [rows[c].map(_out_key) for c in cols]
    key = parts[0]
    for p in parts[1:]:
        key = key + "\x1f" + p
    return key.tolist()


@dataclass
class DedupReport:
    """What :func:`dedup` removed."""

    n_in: int
    """Rows before."""
    exact: int
    """Rows dropped as exact duplicates (same stripped text, label and output)."""
    near: int
    """Further rows dropped as near duplicates (same normalized text, label and output)."""
    conflicts: int
    """Groups of near-identical texts that carry different labels (kept)."""


def dedup(rows: pd.DataFrame) -> tuple[pd.DataFrame, DedupReport]:
    """Drop exact and near duplicates that agree on label and output; keep the first of each group."""
    missing = [c for c in ("text", "label", "output") if c not in rows.columns]
    if missing:
        raise KeyError(f"dedup: rows lack columns {missing}")
    df = rows.reset_index(drop=True)
    out = df["output"].map(_out_key)
    exact_key = df["text"].astype(str).str.strip() + "\x1f" + df["label"].astype(str) + "\x1f" + out
    keep1 = ~exact_key.duplicated()
    norm = df["text"].map(near_duplicate_key)
    near_key = norm + "\x1f" + df["label"].astype(str) + "\x1f" + out
    sub = near_key[keep1]
    keep2 = keep1.copy()
    keep2[sub.index[sub.duplicated()]] = False
    conflicts = int((df.groupby(norm)["label"].nunique() > 1).sum())
    kept = df[keep2].reset_index(drop=True)
    return kept, DedupReport(len(df), int((~keep1).sum()), int((keep1 & ~keep2).sum()), conflicts)


def split_validation(rows: pd.DataFrame, *, val_frac: float = 0.1, seed: int = 7,
                     label_col: str = "label") -> pd.Series:
    """A ``split`` Series (``train`` | ``validation``) with ``round(val_frac * n)`` of each class in validation.

    Seeded and stable (:func:`stable_order`): the rows of a class that rank first by their seeded hash go to
    validation, so a grown corpus keeps its validation rows. A class keeps at least one training row, so a class
    with one row is never lost to validation.
    """
    if not 0 <= val_frac < 1:
        raise ValueError(f"val_frac must be in [0, 1), got {val_frac}")
    split = pd.Series("train", index=rows.index, dtype=object)
    for _, idx in sorted(rows.groupby(label_col, dropna=False).groups.items(), key=lambda kv: str(kv[0])):
        idx = np.array(idx)
        n_val = min(int(np.floor(val_frac * len(idx) + 0.5)), len(idx) - 1)
        if n_val > 0:
            split.loc[idx[stable_order(row_keys(rows.loc[idx]), seed=seed, salt="validation")[:n_val]]] = "validation"
    return split


REFUSAL_TARGETS = ("full", "sentence", "category")
"""Refusal target styles: ``REFUSE cat: sentence Try: suggestion`` | ``REFUSE cat: sentence`` | ``REFUSE cat``."""


def format_chat(rows: pd.DataFrame, *, taxonomy=None, system_prompt: str = SYSTEM_PROMPT,
                refusal_target: str = "full") -> list[list[dict]]:
    """Chat messages per row: system prompt, the request as the user turn, the target as the assistant turn.

    ``refusal_target`` shortens refusal targets (:data:`REFUSAL_TARGETS`): the category is always the first word
    after ``REFUSE``, so scoring reads every style alike; shorter targets cost fewer answer tokens per step.
    """
    if refusal_target not in REFUSAL_TARGETS:
        raise ValueError(f"refusal_target must be one of {REFUSAL_TARGETS}, got {refusal_target!r}")
    solvable = taxonomy.solvable_id if taxonomy is not None else "solvable"
    msgs = []
    for r in rows.itertuples(index=False):
        sugg, title = "", ""
        if taxonomy is not None and r.label != solvable:
            cat = taxonomy[r.label]
            sugg, title = cat.suggestion or "", cat.title
        if refusal_target != "full":
            sugg = ""
        target = format_target(r.label, r.output, getattr(r, "reason_key", None), solvable_id=solvable,
                               suggestion=sugg, title=title, where=f"item {r.item_id}")
        if refusal_target == "category" and r.label != solvable:
            target = target.split(":", 1)[0]
        msgs.append([{"role": "system", "content": system_prompt}, {"role": "user", "content": str(r.text)},
                     {"role": "assistant", "content": target}])
    return msgs


@dataclass
class BuiltDataset:
    """One variant's fine-tuning data, ready for a backend."""

    variant: str
    """The train-set variant (production_only, naive_merge, curated, ...)."""
    train: pd.DataFrame
    """Training rows: item_id, text, label, output, reason_key, messages."""
    validation: pd.DataFrame
    """Validation rows, same columns."""
    report: DedupReport
    """What dedup removed."""
    paths: dict = field(default_factory=dict)
    """Where :func:`save_dataset` wrote it: hf (folder), train_jsonl, validation_jsonl."""
    pool: pd.DataFrame | None = None
    """Every training-split row before ``n_train``'s balanced draw (the rows ``train`` was drawn from; None when
    there was no draw, i.e. ``train`` is the whole split). The decision head learns from these
    (:func:`head_rows`)."""
    target_refusal_share: float = 0.35
    """The refusal share ``n_train``'s balanced draw aims at (``max_refusal_share``, or 0.35 when that is 0 or 1);
    the decision head's rows keep the same share."""

    @property
    def train_pool(self) -> pd.DataFrame:
        """The whole training split: :attr:`pool` when ``train`` was drawn from it, else ``train``."""
        return self.train if self.pool is None else self.pool

    def summary(self) -> dict:
        counts = self.train["label"].value_counts().to_dict()
        return {"variant": self.variant, "n_train": len(self.train),
                "n_distinct_train": int(self.train["item_id"].nunique()),
                "n_validation": len(self.validation),
                "dedup_exact": self.report.exact, "dedup_near": self.report.near,
                "label_conflicts": self.report.conflicts,
                "refusal_share": round(1 - counts.get("solvable", 0) / max(len(self.train), 1), 4)}


def cap_per_class(rows: pd.DataFrame, cap: int, *, seed: int = 7, label_col: str = "label") -> pd.DataFrame:
    """At most ``cap`` rows of each class (a seeded sample; smaller classes are kept whole), in the original order."""
    parts = [g if len(g) <= cap else g.sample(cap, random_state=seed) for _, g in rows.groupby(label_col)]
    return pd.concat(parts).sort_index().reset_index(drop=True) if parts else rows


def cap_refusal_share(rows: pd.DataFrame, share: float, *, solvable_id: str = "solvable", seed: int = 7,
                      label_col: str = "label") -> pd.DataFrame:
    """Sample the non-solvable rows down (each class in proportion) so they are at most ``share`` of the rows."""
    solv = rows[label_col] == solvable_id
    n_solv, n_ref = int(solv.sum()), int((~solv).sum())
    limit = int(share / (1 - share) * n_solv)
    if n_ref <= limit:
        return rows
    frac = limit / n_ref
    parts = [rows[solv]] + [g.sample(int(round(frac * len(g))), random_state=seed)
                            for _, g in rows[~solv].groupby(label_col)]
    return pd.concat(parts).sort_index().reset_index(drop=True)


def balanced_rows(rows: pd.DataFrame, n: int, *, refusal_share: float, solvable_id: str = "solvable",
                  seed: int = 7, label_col: str = "label") -> pd.DataFrame:
    """Exactly ``n`` rows: ``round((1 - refusal_share) * n)`` solvable, the rest split equally over the refusal
    categories present. Each class gives distinct rows first (a seeded sample); a class with fewer rows than its
    quota is repeated (whole passes, then a sample), so every variant sees the same number of examples per class
    and as many distinct rows as it has. Order is shuffled (seeded).

    The sample and the shuffle are stable (:func:`stable_order`): each class gives the rows that rank first by
    their seeded hash, so variants that share rows draw the same ones, and a corpus grown by a few rows keeps
    nearly all of its draw, in nearly the same order.

    >>> df = pd.DataFrame({"label": ["solvable"] * 10 + ["a"] * 1 + ["b"] * 5, "x": range(16)})
    >>> out = balanced_rows(df, 8, refusal_share=0.5, seed=1)
    >>> sorted(out["label"].value_counts().items()), int(out[out.label == "solvable"]["x"].nunique())
    ([('a', 2), ('b', 2), ('solvable', 4)], 4)
    """
    if n <= 0:
        raise ValueError(f"balanced_rows: n must be positive, got {n}")
    if not 0 <= refusal_share <= 1:
        raise ValueError(f"balanced_rows: refusal_share must be in [0, 1], got {refusal_share}")
    groups = {k: g for k, g in rows.groupby(label_col, sort=True)}
    refusals = [k for k in groups if k != solvable_id]
    n_solv = int(round((1 - refusal_share) * n)) if refusals else n
    if solvable_id not in groups:
        n_solv = 0
    quota = {solvable_id: n_solv} if n_solv else {}
    if refusals:
        rest = n - n_solv
        for j, k in enumerate(refusals):
            quota[k] = rest // len(refusals) + (1 if j < rest % len(refusals) else 0)
    parts = []
    for k, q in quota.items():
        g = groups[k]
        order = stable_order(row_keys(g), seed=seed, salt="draw")
        parts.append(g.iloc[np.concatenate([order] * (q // len(g) + 1))[:q]])
    out = pd.concat(parts)
    return out.iloc[stable_order(row_keys(out), seed=seed, salt="order")].reset_index(drop=True)


def head_rows(rows: pd.DataFrame, *, refusal_share: float, solvable_id: str = "solvable", seed: int = 7,
              label_col: str = "label") -> pd.DataFrame:
    """The decision head's rows: every refusal row, and solvable rows (a seeded, stable sample:
    :func:`stable_order`) so that refusals are ``refusal_share`` of the rows; every row when there are fewer solvable
    rows than that, or no refusals.

    A logistic regression fits on thousands of rows in seconds, so unlike the adapter (``max_steps x batch_size``
    rows, :func:`balanced_rows`) the head needs no cap on distinct rows: it sees every refusal its variant has, at the
    same refusal share as the adapter's rows. Refusal categories keep their own proportions. Original order.

    >>> df = pd.DataFrame({"label": ["solvable"] * 10 + ["a"] * 1 + ["b"] * 2})
    >>> head_rows(df, refusal_share=0.5, seed=1)["label"].value_counts().to_dict()
    {'solvable': 3, 'b': 2, 'a': 1}
    """
    if not 0 < refusal_share < 1:
        raise ValueError(f"head_rows: refusal_share must be in (0, 1), got {refusal_share}")
    solv = (rows[label_col] == solvable_id).to_numpy()
    n_ref = int((~solv).sum())
    n_solv = int(round(n_ref * (1 - refusal_share) / refusal_share))
    if n_ref == 0 or n_solv >= solv.sum():
        return rows
    keep = ~solv
    pos = np.flatnonzero(solv)
    keep[pos[stable_order(row_keys(rows.iloc[pos]), seed=seed, salt="head")[:n_solv]]] = True
    return rows[keep]


def build_dataset(rows: pd.DataFrame, *, variant: str = "", taxonomy=None, val_frac: float = 0.1, seed: int = 7,
                  max_per_class: int = 0, max_refusal_share: float = 0.0, n_train: int = 0,
                  refusal_target: str = "full", system_prompt: str = SYSTEM_PROMPT) -> BuiltDataset:
    """Dedup, cap, split and format one variant's rows (other variants' rows are ignored when ``variant`` is given).

    ``max_per_class`` (0 = no cap) samples each class down to at most that many rows after dedup, the same rule for
    every variant: with a few hundred optimizer steps a model sees a few thousand examples, and a 20k-row solvable
    class would otherwise bury the refusal classes. ``max_refusal_share`` (0 = off) then samples the refusal classes
    down so they are at most that share of the rows: a set that is mostly refusals teaches a small model to refuse
    everything.

    ``n_train > 0`` replaces both caps: the split runs on all deduplicated rows, then :func:`balanced_rows` draws
    exactly ``n_train`` training rows (``max_refusal_share`` of them refusals, equal per refusal category, or 0.35
    when that is 0). With ``n_train = max_steps * batch_size`` every variant sees the same examples per class, and
    as many distinct rows as it has, instead of cycling over a few hundred.
    """
    if variant and "variant" in rows.columns:
        rows = rows[rows["variant"] == variant]
    missing = [c for c in TRAIN_COLUMNS if c not in rows.columns]
    if missing:
        raise KeyError(f"train rows for variant {variant!r} lack columns: {', '.join(missing)}")
    if rows.empty:
        raise ValueError(f"no training rows for variant {variant!r}")
    if taxonomy is not None:
        taxonomy.check_labels(rows["label"], where=f"train_sets[{variant}]", ids=rows["item_id"].tolist(),
                              allow_missing=False)
    kept, report = dedup(rows[list(TRAIN_COLUMNS)])
    solvable_id = taxonomy.solvable_id if taxonomy else "solvable"
    if n_train <= 0 and max_per_class > 0:
        kept = cap_per_class(kept, max_per_class, seed=seed)
    if n_train <= 0 and 0 < max_refusal_share < 1:
        kept = cap_refusal_share(kept, max_refusal_share, solvable_id=solvable_id, seed=seed)
    kept["messages"] = format_chat(kept, taxonomy=taxonomy, system_prompt=system_prompt,
                                   refusal_target=refusal_target)
    split = split_validation(kept, val_frac=val_frac, seed=seed)
    train, pool = kept[split == "train"].reset_index(drop=True), None
    share = max_refusal_share if 0 < max_refusal_share < 1 else 0.35
    if n_train > 0:
        pool, train = train, balanced_rows(train, n_train, refusal_share=share, solvable_id=solvable_id, seed=seed)
    return BuiltDataset(variant, train, kept[split == "validation"].reset_index(drop=True), report, pool=pool,
                        target_refusal_share=share)


def _jsonl(df: pd.DataFrame, path: Path) -> Path:
    from ..io import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "w") as fh:
            for m in df["messages"]:
                fh.write(json.dumps({"messages": list(m)}, ensure_ascii=False) + "\n")
    return path


def save_dataset(ds: BuiltDataset, folder: str | Path) -> dict:
    """Write ``<folder>/hf`` (datasets DatasetDict) and ``<folder>/{train,validation}.jsonl`` (OpenAI chat format)."""
    import datasets as hfd

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cols = [*TRAIN_COLUMNS, "messages"]

    def to_hf(df: pd.DataFrame):
        d = df[cols].copy()
        d["output"] = d["output"].map(lambda v: None if _out_key(v) == "" else str(v))
        d["reason_key"] = d["reason_key"].map(lambda v: None if _out_key(v) == "" else str(v))
        d["messages"] = d["messages"].map(list)
        return hfd.Dataset.from_pandas(d, preserve_index=False)

    hfd.DatasetDict({"train": to_hf(ds.train), "validation": to_hf(ds.validation)}).save_to_disk(str(folder / "hf"))
    ds.paths = {"hf": str(folder / "hf"), "train_jsonl": str(_jsonl(ds.train, folder / "train.jsonl")),
                "validation_jsonl": str(_jsonl(ds.validation, folder / "validation.jsonl"))}
    return ds.paths
