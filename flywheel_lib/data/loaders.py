"""Load user data sets into the items table by a column mapping from the params file.

``load_items(path, mapping, source="seed", taxonomy=tax)`` reads JSONL / JSON, CSV, Parquet or a Hugging Face
``datasets`` folder (``save_to_disk``), renames columns by ``mapping`` (items column -> file column) and checks it.
Bad input stops with a :class:`DataError` that names the file, the row and the column; nothing is written, so the run
folder is never left half written (the notebook writes the table only after everything loaded)::

    mapping = {"item_id": "id", "text": "question", "label": "label", "context": "schema"}
    items = load_items("/data/triagesql.jsonl", mapping, source="seed", taxonomy=tax)

Mapped columns: ``item_id`` (default: ``<file stem>-<row>``), ``text`` (required), ``label``, ``output``,
``context`` (dicts/lists become sorted JSON), ``workload_id``, ``timestamp``, ``reason_key``, and any other key,
which is copied under its own name (``true_label``, a production file's hidden truth, is checked like ``label``).
``split_labelled`` cuts one labelled table into seed / eval / production.

Checks at the door, each naming the file, the row and the column: files must be UTF-8 (the error gives the byte
offset and line of the first bad byte); seed and eval rows must all be labelled; every label is a taxonomy
category; a column holds one type (a mix of numbers and strings is refused before it can break the table write);
timestamps parse; a text longer than ``max_text_chars`` is cut (``text_overflow="truncate"``, the ids go to a
:class:`DoorReport`) or refused (``"refuse"``). ``file_map`` picks one file's mapping from a ``column_map`` that
is either one map for every file or keyed per file.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import io
import json
import math
import numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..records import ITEMS, SOURCES
from ..taxonomy import Taxonomy, TaxonomyError

__all__ = ["DataError", "DoorReport", "file_map", "read_any", "load_items", "split_labelled"]

REQUIRED = ("text",)
LABELLED = ("seed", "eval")
"""Sources whose every row must carry a label."""
FILE_KEYS = ("data", "production", "seed", "eval", "traffic")
"""Keys of a per-file ``column_map``: ``data`` is the one labelled file that is split, the others name a source."""
OVERFLOW = ("truncate", "refuse")


class DataError(ValueError):
    """User data that cannot become items; the message names the file, the row and the column."""


@dataclass
class DoorReport:
    """What the loaders changed at the door; pass one to ``load_items`` / ``gather_items`` and record it."""

    truncated: dict[str, list[str]] = field(default_factory=dict)
    """Per file: the ids of the rows whose text was cut to ``max_text_chars``."""

    @property
    def n_truncated(self) -> int:
        """Rows whose text was cut, over all files."""
        return sum(len(v) for v in self.truncated.values())


def file_map(column_map: Mapping[str, Any] | None, file: str) -> dict[str, str]:
    """The column mapping (items column -> file column) for one file: ``data``, ``production``, ``seed`` or ``eval``.

    ``column_map`` is one map for every file, or keyed per file so that a column only one file has (production's
    hidden ``true_label``) need not be faked in the others::

        {"text": "question", "production": {"true_label": "truth"}, "seed": {"label": "label"}}

    String entries are shared by every file; a file's own map adds to them and overrides them (``""`` drops a
    shared entry for that file).
    """
    shared: dict[str, str] = {}
    own: dict[str, Any] = {}
    per_file = []
    for k, v in dict(column_map or {}).items():
        if isinstance(v, Mapping):
            if k not in FILE_KEYS:
                raise DataError(f"column_map[{k!r}] is a map; per-file maps are keyed by {', '.join(FILE_KEYS[:4])}")
            per_file.append(k)
            if k == file:
                own = dict(v)
        else:
            shared[k] = v
    if per_file and file not in per_file and not shared:
        raise DataError(f"column_map is keyed per file ({', '.join(per_file)}) but has no map for the {file} file")
    merged = {**shared, **own}
    for k, v in merged.items():
        if not isinstance(v, str):
            where = f"column_map[{file!r}][{k!r}]" if k in own else f"column_map[{k!r}]"
            raise DataError(f"{where} = {v!r}: a mapping value is the name of a file column")
    return {k: v for k, v in merged.items() if v}


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
            data = json.loads(_decode(p, p.read_bytes()))
            rows = data if isinstance(data, list) else data.get("data", data.get("rows"))
            if not isinstance(rows, list):
                raise DataError(f"{p}: JSON must be a list of objects (or {{'data': [...]}})")
            return pd.DataFrame(rows)
        if suffix in (".csv", ".tsv"):
            return pd.read_csv(io.StringIO(_decode(p, p.read_bytes())), sep="\t" if suffix == ".tsv" else ",",
                               dtype=str, keep_default_na=False)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(p)
    except DataError:
        raise
    except Exception as e:  # unreadable: say which file and why
        raise DataError(f"{p}: cannot read ({type(e).__name__}: {e})") from e
    raise DataError(f"{p}: unknown format {p.suffix!r}; use .jsonl, .json, .csv, .parquet or a datasets folder")


def _decode(p: Path, data: bytes, what: str = "byte") -> str:
    """``data`` as UTF-8 text (a leading BOM dropped); else a DataError giving the first bad byte's offset and line."""
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[start:].decode("utf-8")
    except UnicodeDecodeError as e:
        at = start + e.start
        line = data.count(b"\n", 0, at) + 1
        col = at - (data.rfind(b"\n", 0, at) + 1) + 1
        raise DataError(f"{p}: not UTF-8: {what} offset {at} (line {line}, byte {col} of that line) is 0x{data[at]:02x}; "
                        "save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None


def _read_jsonl(p: Path) -> pd.DataFrame:
    if p.suffix == ".gz":
        text = _decode(p, gzip.decompress(p.read_bytes()), what="decompressed byte")
    else:
        text = _decode(p, p.read_bytes())
    rows = []
    for i, line in enumerate(text.split("\n"), start=1):
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
    return v is None or v is pd.NaT or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def _as_text(v: Any) -> str:
    if _missing(v):
        return ""
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True, ensure_ascii=False)
    if hasattr(v, "tolist"):
        return json.dumps(v.tolist(), sort_keys=True, ensure_ascii=False)
    return str(v)


def _kind(v: Any) -> str:
    """The type a value will have in the written table: number, bool, text (dicts and lists become JSON text)."""
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, numbers.Number):
        return "number"
    if isinstance(v, (str, dict, list)) or hasattr(v, "tolist"):
        return "text"
    return type(v).__name__


def _one_type(p: Path, column: str, values: list, ids: list[str]) -> None:
    """Raise naming the first row whose value's type differs from the column's first value."""
    first = None
    for i, v in enumerate(values):
        if _missing(v):
            continue
        k = _kind(v)
        if first is None:
            first = (i, k)
        elif k != first[1]:
            raise DataError(f"{p}: row {i + 1} (id {ids[i]!r}), column {column!r}: {v!r} is {k}, but row "
                            f"{first[0] + 1} holds {first[1]}; a column must hold one type")


def _labels(p: Path, column: str, values: list, ids: list[str]) -> list[str | None]:
    out = []
    for i, x in enumerate(values):
        if isinstance(x, (dict, list)) or hasattr(x, "tolist"):
            raise DataError(f"{p}: row {i + 1} (id {ids[i]!r}), column {column!r}: a label is a category id, "
                            f"not {type(x).__name__}")
        out.append(None if _missing(x) or x == "" else str(x))
    return out


def _rows(ids: list[str], rows: list[int], extra=lambda i: "") -> str:
    shown = ", ".join(f"row {i + 1} (id {ids[i]!r}{extra(i)})" for i in rows[:5])
    return shown + (f" and {len(rows) - 5} more" if len(rows) > 5 else "")


def _timestamps(p: Path, column: str, values: list, ids: list[str]) -> pd.Series:
    """ISO 8601 strings (any mix of forms) or unix seconds; a value that does not parse is an error."""
    _one_type(p, column, values, ids)
    vals = [None if _missing(v) or v == "" else v for v in values]
    present = [i for i, v in enumerate(vals) if v is not None]
    if present and _kind(vals[present[0]]) == "number":
        ts = pd.to_datetime(pd.Series(vals, dtype="float64"), unit="s", utc=True)
    else:
        ts = pd.to_datetime(pd.Series(vals, dtype=object), utc=True, errors="coerce", format="mixed")
    bad = [i for i in present if pd.isna(ts.iloc[i])]
    if bad:
        i = bad[0]
        raise DataError(f"{p}: row {i + 1} (id {ids[i]!r}), column {column!r}: {vals[i]!r} is not a timestamp "
                        "(ISO 8601 such as 2024-05-01T12:00:00Z, or unix seconds)")
    return ts


def load_items(path: str | os.PathLike, mapping: Mapping[str, Any], source: str = "seed",
               taxonomy: Taxonomy | None = None, *, workload_id: str = "", max_text_chars: int = 0,
               text_overflow: str = "truncate", report: DoorReport | None = None) -> pd.DataFrame:
    """Load one user file as items of ``source``; see the module docstring. Raises :class:`DataError`.

    ``mapping`` is this file's map, or a per-file ``column_map`` (read with :func:`file_map` under ``source``).
    ``max_text_chars`` bounds ``text`` (0: no bound); a longer text is cut (``text_overflow="truncate"``, its id
    recorded in ``report``) or refused with the rows named (``"refuse"``).
    """
    p = Path(path)
    if source not in SOURCES:
        raise DataError(f"{p}: source {source!r} is not one of {', '.join(SOURCES)}")
    if text_overflow not in OVERFLOW:
        raise DataError(f"text_overflow must be one of {', '.join(OVERFLOW)}, not {text_overflow!r}")
    mapping = file_map(mapping, source)
    raw = read_any(p)
    for key in REQUIRED:
        if key not in mapping:
            raise DataError(f"{p}: the column mapping has no entry for {key!r} (mapping: {mapping})")
    if source in LABELLED and "label" not in mapping:
        raise DataError(f"{p}: a {source} file is labelled, but the column mapping has no entry for 'label' "
                        f"(mapping: {mapping})")
    absent = [f"{k} -> {v!r}" for k, v in mapping.items() if v not in raw.columns]
    if absent:
        raise DataError(f"{p}: missing column(s) {', '.join(absent)}; the file has: {', '.join(map(str, raw.columns))}"
                        " (a column only some files have goes in a per-file column_map, e.g. "
                        "{production: {true_label: truth}})")
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
        if not _missing(t) and not isinstance(t, str):
            raise DataError(f"{p}: row {i + 1} (id {ids[i]!r}), column {mapping['text']!r}: text is "
                            f"{type(t).__name__}, not a string")
        if _missing(t) or not t.strip():
            raise DataError(f"{p}: row {i + 1} (id {ids[i]!r}), column {mapping['text']!r}: empty text")
        texts.append(t)
    long = [i for i, t in enumerate(texts) if len(t) > max_text_chars] if max_text_chars > 0 else []
    if long and text_overflow == "refuse":
        raise DataError(f"{p}, column {mapping['text']!r}: {len(long)} row(s) longer than max_text_chars="
                        f"{max_text_chars}: {_rows(ids, long, lambda i: f', {len(texts[i]):,} chars')}; "
                        "raise max_text_chars or set text_overflow to 'truncate'")
    for i in long:
        texts[i] = texts[i][:max_text_chars]
    if long and report is not None:
        report.truncated[str(p)] = [ids[i] for i in long]
    truth_labels = {k: _labels(p, mapping[k], col[k], ids) for k in ("label", "true_label") if k in col}
    labels = truth_labels.get("label", [None] * n)
    if source in LABELLED:
        empty = [i for i, x in enumerate(labels) if x is None]
        if empty:
            raise DataError(f"{p}, column {mapping['label']!r}: {len(empty)} row(s) of this {source} file have no "
                            f"label: {_rows(ids, empty)}; label or drop them (unlabelled requests are production)")
    if taxonomy is not None:
        for k, vals in truth_labels.items():
            try:
                taxonomy.check_labels(vals, where=f"{p} (column {mapping[k]!r})", ids=ids)
            except TaxonomyError as e:
                raise DataError(str(e)) from None
    extras = {k: v for k, v in col.items() if k not in ITEMS and k != "true_label"}
    for k, v in extras.items():
        _one_type(p, mapping[k], v, ids)
    out = pd.DataFrame({
        "item_id": ids,
        "text": texts,
        "source": source,
        "workload_id": [_as_text(x) for x in col["workload_id"]] if "workload_id" in col else workload_id,
        "timestamp": _timestamps(p, mapping["timestamp"], col["timestamp"], ids) if "timestamp" in col else pd.NaT,
        "label": labels,
        "output": [None if _missing(x) or x == "" else _as_text(x) for x in col.get("output", [None] * n)],
        "context": [_as_text(x) for x in col["context"]] if "context" in col else "",
        "split": "eval" if source == "eval" else "",
    })
    out["timestamp"] = pd.to_datetime(out["timestamp"], utc=True)
    for k, v in extras.items():
        out[k] = [_as_text(x) if isinstance(x, (dict, list)) or hasattr(x, "tolist") else x for x in v]
    if "true_label" in truth_labels:
        out["true_label"] = truth_labels["true_label"]
    return out


def _bucket(key: str, seed: int) -> float:
    h = hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()
    return int(h[:12], 16) / float(16 ** 12)


def split_labelled(items: pd.DataFrame, taxonomy: Taxonomy, *, seed: int = 7,
                   fractions: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Cut one labelled table into ``seed`` / ``eval`` / ``production`` rows, deterministically and stratified by label.

    Within each label, rows are ordered by a seeded hash of their id and cut at the cumulative fractions (default
    60/20/20). Production rows play the logs: ``label`` becomes the taxonomy's solvable id (a "logged success"),
    ``true_label`` keeps the human class (or the file's own truth column, where one is mapped). Every row keeps
    ``true_label``.
    """
    fr = dict(fractions or {"seed": 0.6, "eval": 0.2, "production": 0.2})
    bad = [k for k in fr if k not in ("seed", "eval", "production")]
    if bad or abs(sum(fr.values()) - 1) > 1e-6:
        raise DataError(f"split fractions must be seed/eval/production summing to 1, got {fr}")
    out = items.copy()
    if "true_label" in out.columns:  # a mapped truth column wins; rows without one keep their label
        out["true_label"] = out["true_label"].where(out["true_label"].notna(), out["label"])
    else:
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
