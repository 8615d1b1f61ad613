"""The three training sets 04_finetune compares: ``production_only``, ``naive_merge`` and ``curated``.

``production_only``
    production rows as logged (label solvable, the emitted query).
``naive_merge``
    the production rows as logged plus every seed row: the two sources concatenated, conflicts and all (the
    seed document's baseline).
``curated``
    production rows per their resolution: ``keep`` / ``replace`` keep a solvable example with the kept or
    replaced query; ``refusal`` / ``clarify`` become refusal or clarification examples (output None);
    ``opt_out`` and unjudged rows are left out; plus every seed row (human gold; a human review decision about
    a seed row wins over its annotation). A row whose final label is solvable but that has no query (a reviewer
    said "solvable" without writing one about a request the model refused) cannot teach a query and is left out
    too; ``attrs["solvable_without_query"]`` lists their ids.

Columns: ``item_id, text, label, output, reason_key, variant``.

:func:`policy_variant` adds the curated set another gate policy would have made (``curated_all`` for
``gate_scope: all``, ``curated_changes_any`` ...), so ``04_finetune`` and ``05_evaluate`` can train and score two
policies on the same verdicts in one run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import pandas as pd

from ..taxonomy import Taxonomy
from ._votes import is_missing

__all__ = ["build_train_sets", "carry_corpus", "parse_policy", "policy_variant", "TRAIN_COLUMNS", "VARIANTS"]

TRAIN_COLUMNS = ["item_id", "text", "label", "output", "reason_key", "variant"]
VARIANTS = ("production_only", "naive_merge", "curated")


def _frame(df: pd.DataFrame, variant: str) -> pd.DataFrame:
    out = pd.DataFrame({
        "item_id": df["item_id"].to_numpy(), "text": df["text"].to_numpy(), "label": df["label"].to_numpy(),
        "output": df["output"].to_numpy() if "output" in df else None,
        "reason_key": df["reason_key"].to_numpy() if "reason_key" in df else None,
    })
    out["output"] = out["output"].astype(object).where(out["output"].notna(), None)
    out["reason_key"] = out["reason_key"].astype(object).where(out["reason_key"].notna(), None)
    out["variant"] = variant
    return out[TRAIN_COLUMNS]


def build_train_sets(
    items: pd.DataFrame,
    resolutions: pd.DataFrame,
    taxonomy: Taxonomy,
    *,
    reviewed: pd.DataFrame | None = None,
    production_sources=("production", "traffic"),
    seed_sources=("seed",),
    variants=VARIANTS,
) -> pd.DataFrame:
    """All three variants stacked (``variant`` says which); ``variants``: only these (e.g. ``("curated",)`` where
    only the curated rows are looked at: a million-row corpus need not be stacked three times)."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"build_train_sets: unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    prod = items[items["source"].isin(production_sources)]
    prod = prod[prod["label"].notna()]  # a logged answer with no label (a refusal naming no category) teaches nothing
    seed = items[items["source"].isin(seed_sources)].copy()
    logged = _frame(prod.assign(reason_key=None), "production_only") if "production_only" in variants else None
    naive = (pd.concat([_frame(prod.assign(reason_key=None), "naive_merge"), _frame(seed, "naive_merge")],
                       ignore_index=True) if "naive_merge" in variants else None)
    # curated production rows
    res = resolutions[resolutions["action"] != "opt_out"].merge(prod[["item_id", "text"]], on="item_id", how="inner")
    keys = []
    for ev in res["evidence"]:
        e = json.loads(ev) if isinstance(ev, str) else (ev or {})
        keys.append(((e.get("consensus") or {}).get("reason_key")) if not e.get("human") else None)
    cur_prod = pd.DataFrame({
        "item_id": res["item_id"], "text": res["text"], "label": res["label_after"],
        "output": [o if a in ("keep", "replace") else None for o, a in zip(res["output_after"], res["action"])],
        "reason_key": keys,
    })
    # seed rows, human review first
    if reviewed is not None and len(reviewed):
        h = reviewed.drop_duplicates("item_id", keep="last").set_index("item_id")
        hit = seed["item_id"].isin(h.index)
        if hit.any():
            ids = seed.loc[hit, "item_id"]
            seed.loc[hit, "label"] = ids.map(h["human_label"]).to_numpy()
            solv = seed.loc[hit, "label"] == taxonomy.solvable_id
            new_out = ids.map(h["human_output"]).to_numpy()
            old_out = seed.loc[hit, "output"].to_numpy()
            seed.loc[hit, "output"] = [
                (n if not is_missing(n) else o) if s else None for n, o, s in zip(new_out, old_out, solv)
            ]
    curated = pd.concat([_frame(cur_prod, "curated"), _frame(seed, "curated")], ignore_index=True)
    no_query = (curated["label"] == taxonomy.solvable_id) & curated["output"].map(is_missing)
    parts = [logged, naive, curated[~no_query] if "curated" in variants else None]
    out = pd.concat([f for f in parts if f is not None], ignore_index=True)[TRAIN_COLUMNS]
    out.attrs["solvable_without_query"] = curated.loc[no_query, "item_id"].astype(str).tolist()
    return out


def carry_corpus(train_sets: pd.DataFrame, parent: pd.DataFrame) -> pd.DataFrame:
    """A later cycle's training sets: the parent cycle's corpus plus this cycle's new rows, per variant.

    This cycle's decision about an item wins over the parent's (an item judged again keeps the newer label);
    the accepted labels of earlier cycles stay in the corpus, so each cycle starts from a bigger, cleaner baseline.
    """
    frames = []
    for variant in dict.fromkeys([*parent["variant"].unique(), *train_sets["variant"].unique()]):
        new = train_sets[train_sets["variant"] == variant]
        old = parent[(parent["variant"] == variant) & ~parent["item_id"].isin(new["item_id"])]
        frames.append(pd.concat([old, new], ignore_index=True))
    return pd.concat(frames, ignore_index=True)[TRAIN_COLUMNS]


def parse_policy(policy: str) -> tuple[str, str, str]:
    """``"all"`` / ``"changes/majority"`` -> ``(gate_scope, contradiction, variant name)``, checked."""
    from .resolve import CONTRADICTIONS, GATE_SCOPES

    scope, _, contra = str(policy).strip().partition("/")
    if scope not in GATE_SCOPES or (scope == "all" and contra) or (scope == "changes" and contra not in CONTRADICTIONS):
        raise ValueError(f"gate policy {policy!r}: expected 'all' or 'changes/<{'|'.join(CONTRADICTIONS)}>'")
    contra = contra or "unanimous"
    return scope, contra, "curated_" + (scope if scope == "all" else f"{scope}_{contra}")


def policy_variant(items: pd.DataFrame, resolutions: pd.DataFrame, taxonomy: Taxonomy, *, policy: str,
                   reviewed: pd.DataFrame | None = None, **kw) -> pd.DataFrame:
    """The curated rows built from another policy's ``resolutions``, as variant ``curated_<policy>``
    (e.g. ``curated_all``): production rows per that policy's decisions plus every seed row, like ``curated``."""
    name = parse_policy(policy)[2]
    sets = build_train_sets(items, resolutions, taxonomy, reviewed=reviewed, **kw)
    return sets[sets["variant"] == "curated"].assign(variant=name).reset_index(drop=True)


def oracle_train_set(train_sets: pd.DataFrame, truths: list[pd.DataFrame], *, variant: str = "curated",
                     name: str = "oracle", supported: Iterable[str] = ()) -> pd.DataFrame:
    """The ceiling a curation can reach: ``variant``'s rows with the simulator's true labels (``true_label``, and
    ``gold_output`` as the query of a solvable row) wherever a truth table knows the item; rows it does not know keep
    their label. Trained the same way as the candidate, it says how much of the gap to perfect labels the loop has
    closed. ``truths``: the lineage's truth tables (newest first wins). ``supported``: attributes (reason keys) a
    capability change has made answerable since: their rows are true as solvable with ``supported_output``."""
    rows = train_sets[train_sets["variant"] == variant].copy()
    if rows.empty:
        raise ValueError(f"oracle_train_set: train_sets has no rows of variant {variant!r}")
    have = [t for t in truths if {"item_id", "true_label"} <= set(t.columns)]
    if not have:
        raise ValueError("oracle_train_set: no truth table with item_id and true_label (user data without truth)")
    truth = pd.concat(have, ignore_index=True).drop_duplicates("item_id").set_index("item_id")
    keys = set(supported)
    if keys and {"reason_key", "supported_output"} <= set(truth.columns):
        now = truth["reason_key"].fillna("").astype(str).str.split(",").map(lambda ks: bool(keys & set(ks))) \
            & truth["supported_output"].notna()
        truth = truth.assign(true_label=truth["true_label"].where(~now, "solvable"),
                             gold_output=truth["gold_output"].where(~now, truth["supported_output"]))
    known = rows["item_id"].isin(truth.index)
    lab = truth["true_label"].reindex(rows["item_id"]).to_numpy()
    gold = truth["gold_output"].reindex(rows["item_id"]).to_numpy() if "gold_output" in truth else None
    rows.loc[known, "label"] = lab[known.to_numpy()]
    if gold is not None:
        solv = (rows["label"] == "solvable").to_numpy()
        rows["output"] = pd.Series([g if k and s else (None if k else o) for k, s, g, o in
                                    zip(known.to_numpy(), solv, gold, rows["output"])], index=rows.index, dtype=object)
    rows = rows[~((rows["label"] == "solvable") & rows["output"].isna())]  # a solvable row needs its query
    return rows.assign(variant=name)[TRAIN_COLUMNS].reset_index(drop=True)
