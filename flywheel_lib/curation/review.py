"""The human review queue: opted-out items out to people, their decisions back in.

:func:`review_queue` lists the ``opt_out`` resolutions (and the contested keeps), most useful first, with what a
reviewer needs (the request, the judges' votes
and reasons, the conflicting source row); :func:`export_review` writes it as CSV (fill in ``human_label``,
optionally ``human_output`` and ``note``) and as Label Studio tasks JSON with a matching labelling config;
:func:`import_review` reads either back (a CSV, or a Label Studio JSON export) and checks every label against the
taxonomy, naming the file, the row and the column of the first problem. A human decision overrides everything
in :func:`~flywheel_lib.curation.resolve.resolve` and is recorded there as ``decided_by = human``.

:func:`with_audit` adds the audit sample (:func:`~flywheel_lib.curation.audit.draw_audit`: accepted labels drawn at
random to measure the gate's precision on production) to the same file, marked ``audit = 1`` and shown without the
judges' votes, so a reviewer labels them blind; :func:`import_review` keeps the mark. Who answers the file is
:func:`decide_review_source`'s decision: people, or (where a simulator knows the truth) a simulated reviewer.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import pandas as pd

from ..io import atomic_path, write_json
from ..taxonomy import Taxonomy
from ._votes import is_missing

__all__ = ["ReviewError", "review_queue", "export_review", "import_review", "label_studio_config", "REVIEW_COLUMNS",
           "with_audit", "ReviewSource", "decide_review_source", "REVIEW_SOURCES", "label_studio_answer"]

REVIEW_COLUMNS = ["item_id", "text", "source", "label_before", "action", "rule", "votes", "entropy", "reasons",
                  "conflict_with",
                  "conflict_label", "conflict_text", "priority", "audit", "human_label", "human_output", "note",
                  "reviewer"]

REVIEW_SOURCES = ("people", "simulated", "auto")
"""Who answers the review file: ``people`` (export, then import a filled file), ``simulated`` (the truth table
answers) or ``auto`` (simulated only where a generator made the data and so knows the truth)."""


@dataclass(frozen=True)
class ReviewSource:
    """Who answers the review queue and the audit in this run, and why."""

    source: str
    """``people`` or ``simulated``."""
    requested: str
    """The ``review_source`` parameter as given (``people``, ``simulated`` or ``auto``)."""
    why: str
    """The reason, in a sentence, for the manifest."""

    @property
    def simulated(self) -> bool:
        return self.source == "simulated"


def decide_review_source(requested: str, *, source_kind: str | None, has_truth: bool,
                         review_import: bool = False) -> ReviewSource:
    """Decide who answers the review: never a simulation where one cannot know the truth, never one that passes
    for people.

    ``source_kind``: 00_data's ``source_kind`` (``generate`` or ``files``; ``None`` when the run does not record
    it). ``has_truth``: the run has a truth table with ``true_label``. ``review_import``: a filled review file
    is being imported (people's answers). ``auto`` is ``simulated`` only for generated data with a truth table
    and no imported file; ``simulated`` needs a truth table (a generator's, or a mapped ``true_label`` column)
    and no imported file, else it is an error.

    >>> decide_review_source("auto", source_kind="files", has_truth=True).source
    'people'
    >>> decide_review_source("auto", source_kind="generate", has_truth=True).source
    'simulated'
    """
    if requested not in REVIEW_SOURCES:
        raise ValueError(f"review_source {requested!r}: expected one of {', '.join(REVIEW_SOURCES)}")
    if requested == "simulated":
        if review_import:
            raise ValueError("review_source 'simulated' with a review_import file: the file holds people's answers; "
                             "set review_source to people (or auto) to fold them in, or empty review_import")
        if not has_truth:
            raise ValueError("review_source 'simulated' needs a truth table with true_label (generated data, or a "
                             "true_label column mapped in 00_data); this run has none: use people")
        return ReviewSource("simulated", requested, "requested; the simulated reviewer answers from the truth table")
    if requested == "people":
        return ReviewSource("people", requested, "requested; the queue is exported for people")
    if review_import:
        return ReviewSource("people", requested, "a filled review file is imported: people's answers")
    if source_kind == "generate" and has_truth:
        return ReviewSource("simulated", requested, "generated data: the generator's truth answers as a simulated "
                                                    "reviewer")
    if source_kind is None:
        why = "00_data's source_kind is not recorded for this run, so no simulator is known to hold the truth"
    elif source_kind != "generate":
        why = f"user data (00_data source_kind {source_kind!r}): people review it"
    else:
        why = "generated data without a truth table: nothing to simulate from"
    return ReviewSource("people", requested, why)


class ReviewError(ValueError):
    """A reviewed file cannot be read back: the message names the file, the row and the column."""


def _entropy(votes: dict) -> float:
    """Shannon entropy (bits) of a panel's votes, an abstention counted as its own outcome."""
    vals = ["<abstain>" if is_missing(x) else x for x in (votes or {}).values()]
    if not vals:
        return 0.0
    p = np.array(list(Counter(vals).values()), dtype=float) / len(vals)
    return float(-(p * np.log2(p)).sum())


def review_queue(resolutions: pd.DataFrame, items: pd.DataFrame, verdicts: pd.DataFrame | None = None, *,
                 taxonomy: Taxonomy | None = None, include_contested: bool = True) -> pd.DataFrame:
    """The review table, most useful first; ``human_*`` columns empty.

    Rows: the ``opt_out`` items, plus (``include_contested``) items kept although some judge voted another
    category (``evidence.contested``, from ``gate_scope = "changes"``; ``action`` says what the tree did).
    ``priority``: ``0`` a conflict with a reference row (planted or found), ``1`` at least one judge says refusal or
    clarification (a category whose kind is not ``solvable``; without ``taxonomy``: a vote other than the logged
    label), ``2`` the rest. Within a priority, by panel ``entropy`` (bits, abstentions an outcome of their own)
    from high to low, then by item id. A reviewer with a budget of ``n`` items takes the first ``n`` rows.
    """
    contested = []
    for ev in resolutions["evidence"]:
        e = json.loads(ev) if isinstance(ev, str) else (ev or {})
        contested.append(bool(e.get("contested")))
    pick = (resolutions["action"] == "opt_out").to_numpy(dtype=bool, copy=True)
    if include_contested:
        pick |= np.asarray(contested, dtype=bool)
    q = resolutions[pick]
    mine = items[items["item_id"].isin(q["item_id"])]  # the queue's items only (the corpus may hold millions)
    texts = dict(zip(mine["item_id"], mine["text"]))
    sources = dict(zip(mine["item_id"], mine["source"]))
    kinds = {c.id: c.kind for c in taxonomy.categories} if taxonomy is not None else None
    rows = []
    reasons = {}
    if verdicts is not None and len(verdicts):
        v = verdicts[verdicts["item_id"].isin(q["item_id"])]
        for iid, g in v.groupby("item_id"):
            reasons[iid] = json.dumps({j: (None if is_missing(r) else r) for j, r in zip(g["judge"], g["reason_key"])})
    for r in q.itertuples(index=False):
        ev = json.loads(r.evidence) if isinstance(r.evidence, str) else (r.evidence or {})
        cons = ev.get("consensus") or {}
        cf = ev.get("conflict") or {}
        votes = cons.get("votes") or {}
        cast = [x for x in votes.values() if not is_missing(x)]
        if kinds is not None:
            refuses = any(kinds.get(x) not in (None, "solvable") for x in cast)
        else:
            refuses = any(x != r.label_before for x in cast)
        rows.append({
            "item_id": r.item_id, "text": texts.get(r.item_id, ""), "source": sources.get(r.item_id, ""),
            "label_before": r.label_before, "action": r.action, "rule": ev.get("rule", ""), "votes": json.dumps(votes), "entropy": round(_entropy(votes), 4),
            "reasons": reasons.get(r.item_id, "{}"),
            "conflict_with": cf.get("other_id") or "", "conflict_label": cf.get("other_label") or "",
            "conflict_text": cf.get("other_text") or "", "priority": 0 if cf else (1 if refuses else 2), "audit": 0,
            "human_label": "", "human_output": "", "note": "", "reviewer": "",
        })
    out = pd.DataFrame(rows, columns=REVIEW_COLUMNS)
    out["entropy"] = out["entropy"].astype(float)
    out = out.sort_values(["priority", "entropy", "item_id"], ascending=[True, False, True], kind="stable")
    return out.reset_index(drop=True)


def with_audit(queue: pd.DataFrame, sample: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    """The review file: the audit sample first (``audit = 1``, ``priority = -1``), then the queue.

    ``sample``: ``item_id, category`` from :func:`~flywheel_lib.curation.audit.draw_audit`. An audit item shows
    only its request (no votes, reasons or gate label: the reviewer labels it blind, so the answer measures the
    gate rather than agrees with it); one that is already in the queue keeps its queue row, marked ``audit = 1``.
    Every audit row needs an answer: the estimate uses the answered ones, and a category left unanswered widens
    its interval.
    """
    q = queue.copy()
    if "audit" not in q.columns:
        q["audit"] = 0
    in_queue = q["item_id"].isin(sample["item_id"])
    q.loc[in_queue, "audit"] = 1
    new = sample[~sample["item_id"].isin(q["item_id"])]
    mine = items[items["item_id"].isin(new["item_id"])].drop_duplicates("item_id").set_index("item_id")
    rows = [{"item_id": iid, "text": mine["text"].get(iid, ""), "source": mine["source"].get(iid, ""),
             "label_before": mine["label"].get(iid, "") if "label" in mine.columns else "", "action": "audit",
             "rule": "audit_sample", "votes": "{}", "entropy": 0.0, "reasons": "{}", "conflict_with": "",
             "conflict_label": "", "conflict_text": "", "priority": -1, "audit": 1, "human_label": "",
             "human_output": "", "note": "", "reviewer": ""} for iid in new["item_id"]]
    head = pd.DataFrame(rows, columns=REVIEW_COLUMNS)
    out = pd.concat([head, q[REVIEW_COLUMNS]], ignore_index=True) if len(head) else q[REVIEW_COLUMNS]
    out["audit"] = out["audit"].astype(int)
    out["entropy"] = out["entropy"].astype(float)
    return out.reset_index(drop=True)


def _flag(x) -> bool:
    """An ``audit`` cell as written by a spreadsheet or Label Studio: 1, "1", true, "yes" ..."""
    if is_missing(x):
        return False
    return str(x).strip().lower() in ("1", "1.0", "true", "yes", "y")


def label_studio_config(taxonomy: Taxonomy) -> str:
    """A Label Studio labelling config: the request, the votes, one choice per category, a gold-output box."""
    choices = "\n".join(f'    <Choice value="{escape(c.id)}" hint="{escape(c.description, {chr(34): "&quot;"})}"/>'
                        for c in taxonomy.categories)
    return (
        "<View>\n"
        '  <Text name="text" value="$text"/>\n'
        '  <Header value="Judges: $votes  |  conflicts with ($conflict_label): $conflict_text" size="6"/>\n'
        '  <Choices name="label" toName="text" choice="single" showInLine="true" required="true">\n'
        f"{choices}\n"
        "  </Choices>\n"
        '  <TextArea name="output" toName="text" placeholder="Gold output (solvable only)" maxSubmissions="1"/>\n'
        '  <TextArea name="note" toName="text" placeholder="Note" maxSubmissions="1"/>\n'
        "</View>\n"
    )


def export_review(queue: pd.DataFrame, csv_path: str | Path, *, taxonomy: Taxonomy,
                  label_studio_path: str | Path | None = None) -> dict[str, Path]:
    """Write the queue as CSV, and optionally as Label Studio tasks JSON plus ``<name>.label_config.xml``."""
    paths = {}
    with atomic_path(csv_path) as tmp:
        queue.to_csv(tmp, index=False)
    paths["csv"] = Path(csv_path)
    if label_studio_path:
        data_cols = [c for c in REVIEW_COLUMNS if not c.startswith("human_") and c not in ("note", "reviewer")]
        tasks = [{"data": {c: (None if is_missing(row[c]) else row[c]) for c in data_cols}}
                 for row in queue.to_dict("records")]
        paths["label_studio"] = write_json(label_studio_path, tasks)
        cfg = Path(label_studio_path).with_suffix(".label_config.xml")
        with atomic_path(cfg) as tmp:
            tmp.write_text(label_studio_config(taxonomy))
        paths["label_config"] = cfg
    return paths


def _check(df: pd.DataFrame, taxonomy: Taxonomy, path: Path, row_name: str) -> pd.DataFrame:
    known = set(taxonomy.ids)
    seen: dict[str, str] = {}
    for r in df.itertuples(index=False):
        where = f"{path}: {row_name} {r.row}"
        if is_missing(r.item_id):
            raise ReviewError(f"{where}: column item_id is empty")
        if r.human_label not in known:
            raise ReviewError(f"{where}: column human_label has {r.human_label!r}, which is not a category of taxonomy "
                              f"{taxonomy.name!r} (known: {', '.join(taxonomy.ids)})")
        if r.item_id in seen and seen[r.item_id] != r.human_label:
            raise ReviewError(f"{where}: item {r.item_id!r} was already labelled {seen[r.item_id]!r}, now {r.human_label!r}")
        seen[r.item_id] = r.human_label
    return df


def label_studio_answer(annotation: dict) -> dict:
    """One Label Studio annotation as ``{label, output, note, reviewer}`` (``reviewer``: ``completed_by``'s email,
    or its id; ``""`` where the export has neither)."""
    res = {}
    for x in annotation.get("result") or []:
        v = x.get("value") or {}
        if "choices" in v:
            res[x.get("from_name", "label")] = (v["choices"] or [None])[0]
        elif "text" in v:
            res[x.get("from_name", "")] = "\n".join(v["text"]) if isinstance(v["text"], list) else v["text"]
    who = annotation.get("completed_by")
    return {"label": res.get("label"), "output": res.get("output"), "note": res.get("note"),
            "reviewer": str(who.get("email", who) if isinstance(who, dict) else (who or ""))}


def label_studio_tasks(p: Path) -> list[tuple[dict, dict]]:
    """The tasks of a Label Studio JSON export, each with its ``data`` (which must name the ``item_id``); errors name
    the file and the task."""
    try:
        tasks = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ReviewError(f"{p}: not valid JSON: {e}") from e
    if not isinstance(tasks, list):
        raise ReviewError(f"{p}: expected a list of Label Studio tasks")
    out = []
    for k, t in enumerate(tasks):
        data = t.get("data") or {}
        if "item_id" not in data:
            raise ReviewError(f"{p}: task {k}: data has no item_id")
        out.append((t, data))
    return out


def import_review(path: str | Path, *, taxonomy: Taxonomy) -> pd.DataFrame:
    """Read a reviewed CSV or a Label Studio JSON export: ``item_id, human_label, human_output, note, reviewer,
    row, audit, source_file`` (``audit``: the row was an audit item; False where the file has no such column).
    Rows without a ``human_label`` (not yet reviewed) are skipped."""
    p = Path(path)
    if not p.exists():
        raise ReviewError(f"review file {p} does not exist")
    cols = ["item_id", "human_label", "human_output", "note", "reviewer", "row"]
    if p.suffix.lower() == ".json":
        rows = []
        for k, (t, data) in enumerate(label_studio_tasks(p)):
            anns = [a for a in (t.get("annotations") or []) if not a.get("was_cancelled")]
            if not anns:
                continue
            res = label_studio_answer(anns[-1])
            if is_missing(res["label"]):
                continue
            rows.append({"item_id": data["item_id"], "human_label": res["label"], "human_output": res["output"],
                         "note": res["note"], "reviewer": res["reviewer"], "row": k, "audit": _flag(data.get("audit"))})
        df = pd.DataFrame(rows, columns=[*cols, "audit"])
        row_name = "task"
    else:
        try:
            raw = pd.read_csv(p, dtype=str, keep_default_na=False)
        except Exception as e:
            raise ReviewError(f"{p}: cannot read as CSV: {e}") from e
        for c in ("item_id", "human_label"):
            if c not in raw.columns:
                raise ReviewError(f"{p}: column {c!r} is missing (columns: {', '.join(raw.columns)})")
        raw["row"] = range(2, len(raw) + 2)  # the line in the file, header = line 1
        raw["human_label"] = raw["human_label"].str.strip()
        raw = raw[raw["human_label"] != ""]
        for c in ("human_output", "note", "reviewer"):
            raw[c] = raw[c].where(raw[c].str.strip() != "", None) if c in raw.columns else None
        raw["audit"] = [_flag(x) for x in raw["audit"]] if "audit" in raw.columns else False
        df = raw[[*cols, "audit"]].reset_index(drop=True)
        row_name = "line"
    _check(df, taxonomy, p, row_name)
    audit = df["audit"].astype(bool).to_numpy()
    df = pd.DataFrame({c: pd.Series([None if is_missing(x) else x for x in df[c]], dtype=object) for c in cols})
    df["audit"] = audit
    df["source_file"] = str(p)
    return df.drop_duplicates("item_id", keep="last").reset_index(drop=True)
