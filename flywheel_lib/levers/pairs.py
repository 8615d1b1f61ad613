"""Lever 4, the data: preference pairs from the judged traffic of the deployed model, and their two export formats.

A pair is built where the panel *accepted* a label (consensus ``status == "accepted"``) and what the deployed model
logged disagrees with it. The chosen answer is the target for the accepted label; the rejected answer is what the
model said. The kinds, per row:

============================  ======================================  ===========================================
kind                          accepted label / what the model did       chosen / rejected
============================  ======================================  ===========================================
``refusal_vs_empty_query``    a refusal category / a query that        the refusal (category, reason, suggestion)
                              selects nobody (the seed's failure)       / the query
``refusal_vs_query``          a refusal category / any other query     the refusal / the query
``refusal_vs_wrong_category`` a refusal category / another refusal     the right refusal / the wrong one
``query_vs_refusal``          solvable, correct query known / refused  the known query / the refusal
``query_vs_wrong_query``      solvable, correct query known / a query  the known query / the query
                              selecting other customers
============================  ======================================  ===========================================

A solvable request whose correct query nobody knows gives no pair (there is nothing right to prefer).

Exports: :func:`to_openai_jsonl` writes the JSONL the OpenAI preference (DPO) fine-tuning API takes
(``input.messages``, ``preferred_output``, ``non_preferred_output``); :func:`to_hf_folder` a Hugging Face
``datasets`` folder with ``prompt``, ``chosen``, ``rejected`` (and ``item_id``, ``kind``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..training.datasets import near_duplicate_key
from ..training.targets import SYSTEM_PROMPT, format_target, parse_answer

__all__ = ["PAIR_COLUMNS", "QUERY_KINDS", "DPO_PAIRS", "build_preference_pairs", "dpo_pairs", "known_queries",
           "to_openai_jsonl", "to_hf_folder"]

PAIR_COLUMNS = ["item_id", "prompt", "chosen", "rejected", "kind", "accepted_label", "model_label"]

QUERY_KINDS = ("query_vs_refusal", "query_vs_wrong_query")
"""Pair kinds whose chosen answer is a query: what the decoder writes, with or without a decision head."""

DPO_PAIRS = ("auto", "all", "query")
"""``dpo_pairs`` choices of ``05_evaluate``: see :func:`dpo_pairs`."""


def dpo_pairs(pairs: pd.DataFrame, which: str = "auto", *, has_head: bool = False) -> pd.DataFrame:
    """The preference pairs DPO trains the candidate's adapter on.

    ``"all"``: every pair. ``"query"``: only pairs whose chosen answer is a query (:data:`QUERY_KINDS`).
    ``"auto"``: ``"query"`` when the candidate has a decision head (``has_head``), else ``"all"``. With a head the
    adapter never decides whether to refuse or with which category: the head does, and it learns that from the
    curated rows, where the panel's accepted refusals of the same traffic already are. A refusal-vs-query pair can
    then only pull the adapter away from writing queries: in the demo's cycle 2 (run ``20261201-143007_demo_7af44f``)
    DPO on 4 such pairs took the candidate's query pass rate from 0.494 to 0.244.
    """
    if which not in DPO_PAIRS:
        raise ValueError(f"dpo_pairs must be one of {', '.join(DPO_PAIRS)}, got {which!r}")
    if which == "all" or (which == "auto" and not has_head):
        return pairs
    return pairs[pairs["kind"].isin(QUERY_KINDS)]


def known_queries(rows: pd.DataFrame, *, solvable_id: str = "solvable") -> dict[str, str]:
    """Normalized request text -> a correct query, from labelled rows (``text, label, output``: a store, a corpus)."""
    ok = rows[(rows["label"] == solvable_id) & rows["output"].notna()]
    return {near_duplicate_key(str(t)): str(o) for t, o in zip(ok["text"], ok["output"]) if str(o).strip()}


def _model_answer(row, solvable_id: str = "solvable") -> str:
    ans = getattr(row, "answer", None)
    if isinstance(ans, str) and ans.strip():
        return ans.strip()
    out = getattr(row, "output", None)
    if isinstance(out, str) and out.strip():
        return out.strip()
    lab = getattr(row, "label", None)  # a logged refusal without its text: its decision and category
    return f"REFUSE {lab}" if isinstance(lab, str) and lab and lab != solvable_id else ""


def build_preference_pairs(items: pd.DataFrame, consensus: pd.DataFrame, *, taxonomy, domain=None,
                           queries: dict[str, str] | None = None,
                           sources: tuple[str, ...] = ("production", "traffic")) -> pd.DataFrame:
    """Preference pairs (:data:`PAIR_COLUMNS`) from ``items`` rows of ``sources`` judged in ``consensus``.

    ``items`` holds what the deployed model did (``label``: the solvable id for a query, else the refusal category;
    ``output``: its query; ``answer``: its raw text when logged, else the query or ``REFUSE <category>``). In a later
    cycle the parent's traffic arrives as ``production`` rows (00_data samples it), hence the default ``sources``. ``queries`` maps normalized request text to a known
    correct query (:func:`known_queries`). ``domain`` (its ``execute`` and ``same_result``) tells an empty or wrong
    query apart; without it every query against a refusal counts as ``refusal_vs_query``.
    """
    for name, df, cols in (("items", items, ("item_id", "text", "label", "output", "source")),
                           ("consensus", consensus, ("item_id", "category", "status"))):
        miss = [c for c in cols if c not in df.columns]
        if miss:
            raise ValueError(f"{name} table lacks columns: {', '.join(miss)}")
    queries = queries or {}
    solv = taxonomy.solvable_id
    refusable = taxonomy.decline_ids
    acc = consensus[consensus["status"] == "accepted"][["item_id", "category"] +
                                                       (["reason_key"] if "reason_key" in consensus else [])]
    acc = acc.rename(columns={"category": "accepted_label", "reason_key": "accepted_reason"})
    rows = items[items["source"].isin(sources)].merge(acc, on="item_id", how="inner")
    out = []
    for r in rows.itertuples(index=False):
        said = _model_answer(r, solv)
        if not said:
            continue
        ans = parse_answer(said, refusable)
        acc_label = r.accepted_label
        if acc_label != solv:
            if ans.refused and ans.refusal_category == acc_label:
                continue
            if ans.refused:
                kind = "refusal_vs_wrong_category"
            else:
                kind = "refusal_vs_query"
                if domain is not None and ans.output:
                    try:
                        kind = "refusal_vs_empty_query" if len(domain.execute(ans.output)) == 0 else kind
                    except Exception:  # noqa: BLE001 - a query that does not run is still a query the model should not have written
                        pass
            cat = taxonomy[acc_label]
            chosen = format_target(acc_label, None, getattr(r, "accepted_reason", None), solvable_id=solv,
                                   suggestion=cat.suggestion or "", title=cat.title)
        else:
            gold = queries.get(near_duplicate_key(str(r.text)))
            if not gold:
                continue
            if ans.refused:
                kind = "query_vs_refusal"
            else:
                try:
                    same = domain is not None and bool(domain.same_result(ans.output, gold))
                except Exception:  # noqa: BLE001 - an answer that does not run is a wrong query
                    same = False
                if same or domain is None:
                    continue
                kind = "query_vs_wrong_query"
            chosen = " ".join(gold.split())
        if chosen.strip() == said.strip():
            continue
        out.append({"item_id": r.item_id, "prompt": str(r.text), "chosen": chosen, "rejected": said, "kind": kind,
                    "accepted_label": acc_label, "model_label": r.label})
    return pd.DataFrame(out, columns=PAIR_COLUMNS)


def to_openai_jsonl(pairs: pd.DataFrame, path: str | Path, *, system_prompt: str = SYSTEM_PROMPT) -> Path:
    """The pairs in the OpenAI preference fine-tuning format, one JSON object a line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        for r in pairs.itertuples(index=False):
            fh.write(json.dumps({
                "input": {"messages": [{"role": "system", "content": system_prompt},
                                       {"role": "user", "content": r.prompt}]},
                "preferred_output": [{"role": "assistant", "content": r.chosen}],
                "non_preferred_output": [{"role": "assistant", "content": r.rejected}]}, ensure_ascii=False) + "\n")
    return path


def to_hf_folder(pairs: pd.DataFrame, folder: str | Path) -> Path:
    """The pairs as a Hugging Face ``datasets`` folder (``datasets.load_from_disk``): prompt, chosen, rejected."""
    from datasets import Dataset

    folder = Path(folder)
    cols = ["prompt", "chosen", "rejected", "item_id", "kind"]
    Dataset.from_pandas(pairs[cols].astype(str).reset_index(drop=True), preserve_index=False).save_to_disk(str(folder))
    return folder
