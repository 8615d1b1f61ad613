"""Load user data sets into the items table by a column mapping from the params file.

``load_items(path, mapping, source="seed", taxonomy=tax)`` reads JSONL / JSON, CSV, Parquet or a Hugging Face
``datasets`` folder (``save_to_disk``), renames columns by ``mapping`` (items column -> file column) and checks it.
Bad input stops with a :class:`DataError` that names the file, the row and the column; nothing is written, so the run
folder is never left half written (the notebook writes the table only after everything loaded)::

    mapping = {"item_id": "id", "text": "question", "label": "label", "context": "schema"}
    items = load_items("/data/triagesql.jsonl", mapping, source="seed", taxonomy=tax)

Mapped columns: ``item_id`` (default: ``<file stem>-<row>``), ``text`` (required), ``label``, ``output``,
``context`` (dicts/lists become sorted JSON), ``workload_id``, ``timestamp``, ``reason_key``, and any other key,
which is copied under its own name. ``split_labelled`` cuts one labelled table into seed / eval / production.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from ..records import ITEMS, SOURCES
from ..taxonomy import Taxonomy, TaxonomyError

__all__ = ["DataError", "read_any", "load_items", "split_labelled"]

REQUIRED = ("text",)


class DataError(ValueError):
    """User data that cannot become items; the message names the file, the row and the column."""


def read_any(path: str | os.PathLike) -> pd.DataFrame:
    """Read a JSONL/JSON, CSV, Parquet file or a Hugging Face ``datasets`` folder into a DataFrame."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: file does not exist")
    try:
        if p.is_dir():
            if not ((p / "dataset_info.json").exists() or (p / "state.json").exists()
                    or (p / "dataset_dict.json").exists()):
                raise DataError(f"{p}: a folder must be a Hugging Face dataset saved with save_to_disk")
            import datasets

            ds = datasets.load_from_disk(str(p))
            if isinstance(ds, datasets.DatasetDict):
                ds = datasets.concatenate_datasets([ds[k] for k in sorted(ds)])
            return ds.to_pandas()
        suffix = "".join(p.suffixes[-2:]) if p.suffix == ".gz" else p.suffix
        if suffix in (".jsonl", ".jsonl.gz", ".ndjson"):
            return _read_jsonl(p)
        if suffix == ".json":
            data = json.loads(p.read_text())
            rows = data if isinstance(data, list) else data.get("data", data.get("rows"))
            if not isinstance(rows, list):
                raise DataError(f"{p}: JSON must be a list of objects (or {{'data': [...]}})")
            return pd.DataFrame(rows)
        if suffix in (".csv", ".tsv"):
            return pd.read_csv(p, sep="\t" if suffix == ".tsv" else ",", dtype=str, keep_default_na=False)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(p)
    except DataError:
        raise
    except Exception as e:  # unreadable: say which file and why
        raise DataError(f"{p}: cannot read ({type(e).__name__}: {e})") from e
    raise DataError(f"{p}: unknown format {p.suffix!r}; use .jsonl, .json, .csv, .parquet or a datasets folder")


def _read_jsonl(p: Path) -> pd.DataFrame:
    rows = []
    opener = __import__("gzip").open if p.suffix == ".gz" else open
    with opener(p, "rt", encoding="utf-8") as fh:
        for i, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{p}: line {i} is not valid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(obj, dict):
                raise DataError(f"{p}: line {i} is a {type(obj).__name__}, not a JSON object")
            rows.append(obj)
    return pd.DataFrame(rows)


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _as_text(v: Any) -> str:
    if _missing(v):
        return ""
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True, ensure_ascii=False)
    if hasattr(v, "tolist"):
        return json.dumps(v.tolist(), sort_keys=True, ensure_ascii=False)
    return str(v)


def load_items(path: str | os.PathLike, mapping: Mapping[str, str], source: str = "seed",
               taxonomy: Taxonomy | None = None, *, workload_id: str = "") -> pd.DataFrame:
    """Load one user file as items of ``source``; see the module docstring. Raises :class:`DataError`."""
    p = Path(path)
    if source not in SOURCES:
        raise DataError(f"{p}: source {source!r} is not one of {', '.join(SOURCES)}")
    raw = read_any(p)
    mapping = dict(mapping)
    for key in REQUIRED:
        if key not in mapping:
            raise DataError(f"{p}: the column mapping has no entry for {key!r} (mapping: {mapping})")
    absent = [f"{k} -> {v!r}" for k, v in mapping.items() if v not in raw.columns]
    if absent:
        raise DataError(f"{p}: missing column(s) {', '.join(absent)}; the file has: {', '.join(map(str, raw.columns))}")
    n = len(raw)
    if n == 0:
        raise DataError(f"{p}: no rows")
    col = {k: raw[v].tolist() for k, v in mapping.items()}
    ids = [_as_text(x) for x in col["item_id"]] if "item_id" in col else [f"{p.stem}-{i:06d}" for i in range(n)]
    for i, x in enumerate(ids):
        if not x.strip():
            raise DataError(f"{p}: row {i + 1}, column {mapping['item_id']!r}: empty id")
    seen: dict[str, int] = {}
    for i, x in enumerate(ids):
        if x in seen:
            raise DataError(f"{p}: row {i + 1}, column {mapping.get('item_id')!r}: duplicate id {x!r} "
                            f"(first at row {seen[x] + 1})")
        seen[x] = i
    texts = []
    for i, t in enumerate(col["text"]):
        if _missing(t) or not str(t).strip():
            raise DataError(f"{p}: row {i + 1} (id {ids[i]!r}), column {mapping['text']!r}: empty text")
        texts.append(str(t))
    labels = [None if _missing(x) or x == "" else str(x) for x in col.get("label", [None] * n)]
    if taxonomy is not None and "label" in col:
        try:
            taxonomy.check_labels(labels, where=f"{p} (column {mapping['label']!r})", ids=ids)
        except TaxonomyError as e:
            raise DataError(str(e)) from None
    out = pd.DataFrame({
        "item_id": ids,
        "text": texts,
        "source": source,
        "workload_id": [_as_text(x) for x in col["workload_id"]] if "workload_id" in col else workload_id,
        "timestamp": pd.to_datetime(col["timestamp"], utc=True, errors="coerce") if "timestamp" in col else pd.NaT,
        "label": labels,
        "output": [None if _missing(x) or x == "" else str(x) for x in col.get("output", [None] * n)],
        "context": [_as_text(x) for x in col["context"]] if "context" in col else "",
        "split": "eval" if source == "eval" else "",
    })
    out["timestamp"] = pd.to_datetime(out["timestamp"], utc=True)
    for k, v in col.items():
        if k not in ITEMS:
            out[k] = [_as_text(x) if isinstance(x, (dict, list)) else x for x in v]
    return out


def _bucket(key: str, seed: int) -> float:
    h = hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()
    return int(h[:12], 16) / float(16 ** 12)


def split_labelled(items: pd.DataFrame, taxonomy: Taxonomy, *, seed: int = 7,
                   fractions: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Cut one labelled table into ``seed`` / ``eval`` / ``production`` rows, deterministically and stratified by label.

    Within each label, rows are ordered by a seeded hash of their id and cut at the cumulative fractions (default
    60/20/20). Production rows play the logs: ``label`` becomes the taxonomy's solvable id (a "logged success"),
    ``true_label`` keeps the human class. Every row keeps ``true_label``.
    """
    fr = dict(fractions or {"seed": 0.6, "eval": 0.2, "production": 0.2})
    bad = [k for k in fr if k not in ("seed", "eval", "production")]
    if bad or abs(sum(fr.values()) - 1) > 1e-6:
        raise DataError(f"split fractions must be seed/eval/production summing to 1, got {fr}")
    out = items.copy()
    out["true_label"] = out["label"]
    order = ["seed", "eval", "production"]
    sources = pd.Series("", index=out.index, dtype=object)
    for _, g in out.groupby(out["label"].fillna(""), sort=True):
        ranked = sorted(g.index, key=lambda i: _bucket(str(out.at[i, "item_id"]), seed))
        m = len(ranked)
        cuts, acc = [], 0.0
        for k in order:
            acc += fr.get(k, 0.0)
            cuts.append(round(acc * m))
        start = 0
        for k, end in zip(order, cuts):
            for i in ranked[start:end]:
                sources.at[i] = k
            start = end
    out["source"] = sources
    out["split"] = ["eval" if s == "eval" else "" for s in sources]
    out.loc[out["source"] == "production", "label"] = taxonomy.solvable_id
    return out
