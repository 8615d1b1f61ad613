"""The levers inside a cycle: what 05_evaluate's lever cells call, so the notebook stays thin.

- :func:`cycle_of` — this run's cycle in its lineage;
- :func:`update_store` — the parent's example store plus this cycle's curated corpus, each label with its origin;
- :func:`label_origins` — who decided each curated label: the panel, a person, the tree, or nobody (the log);
- :func:`consulted_rows` — the stored rows the deployed model's decision consults;
- :func:`retrieval_generate` — answers of a model prompted with the K nearest stored examples, with their cost;
- :func:`arena_requests` — a seeded sample of the judged traffic with the panel's accepted labels;
- :func:`heldout_battles` — a seeded sample of labelled held-out slices with the answers already scored;
- :func:`rate_models` — Bradley-Terry / Elo of the arena, anchored on the parent's rating of the deployed model.
"""

from __future__ import annotations

import time

import pandas as pd

from .pairs import known_queries
from .ratings import BradleyTerry
from .store import ExampleRetriever, append_examples, fewshot_prompts

__all__ = ["cycle_of", "update_store", "label_origins", "consulted_rows", "retrieval_generate", "arena_requests",
           "heldout_battles", "rate_models", "identity_of"]


def cycle_of(st) -> int:
    """The stage's cycle: the manifest's ``parent.cycle`` (``flywheel cycles`` sets it), else 1 + the parent's."""
    c = (st.view().manifest.get("parent") or {}).get("cycle")
    if c:
        return int(c)
    if st.parent is not None:
        return int((st.parent.manifest.get("parent") or {}).get("cycle") or 1) + 1
    return 1


def update_store(st, taxonomy, *, cycle: int, corpus_variant: str = "curated") -> pd.DataFrame:
    """The parent's ``example_store`` (unchanged) plus the rows of this run's ``train_sets`` (``corpus_variant``)
    it lacks; each new row's ``source`` is the item's source in this run's ``items`` (else ``curated``)."""
    parent = st.parent.read("example_store") if st.parent is not None and st.parent.exists("example_store") else None
    ts = st.read("train_sets")
    rows = ts[ts["variant"] == corpus_variant] if "variant" in ts else ts
    if rows.empty:
        raise ValueError(f"train_sets of {st.run_dir.name} has no rows of variant {corpus_variant!r}")
    items = st.read("items", contract="items")[["item_id", "source"]]
    rows = rows.merge(items, on="item_id", how="left")
    rows["source"] = rows["source"].fillna("curated")
    cons = st.read("consensus") if st.exists("consensus") else None
    res = st.read("resolutions") if st.exists("resolutions") else None
    rows["label_origin"] = label_origins(rows["item_id"], cons, res)
    return append_examples(parent, rows, cycle=cycle, taxonomy=taxonomy, run_id=st.run_dir.name)


def label_origins(item_ids: pd.Series, consensus: pd.DataFrame | None,
                  resolutions: pd.DataFrame | None) -> list[str]:
    """For each item: who decided its curated label (:data:`~flywheel_lib.levers.store.LABEL_ORIGINS`).

    ``review`` where the review queue's person decided (03's ``resolutions``, ``decided_by == "human"``), else
    ``panel`` where the judges agreed (02's ``consensus``, ``status == "accepted"``), else ``tree`` where the decision
    tree changed the logged label, ``logged`` where it kept it, and ``corpus`` for a row no stage questioned."""
    accepted = set(consensus.loc[consensus["status"] == "accepted", "item_id"]) if consensus is not None else set()
    human: set = set()
    changed: set = set()
    kept: set = set()
    if resolutions is not None and len(resolutions):
        last = resolutions.drop_duplicates("item_id", keep="last")
        human = set(last.loc[last["decided_by"] == "human", "item_id"])
        same = last["label_after"].astype(str) == last["label_before"].astype(str)
        changed, kept = set(last.loc[~same, "item_id"]), set(last.loc[same, "item_id"])
    return ["review" if i in human else "panel" if i in accepted else "tree" if i in changed else
            "logged" if i in kept else "corpus" for i in item_ids]


def consulted_rows(store: pd.DataFrame, *, scope: str = "new", admit: str = "agreed") -> pd.DataFrame:
    """The stored rows a deployed model's decision consults.

    ``scope``: ``"new"`` the rows added after the store's first cycle (the labelled traffic), ``"all"`` every row.
    ``admit``: ``"agreed"`` leaves out rows whose ``label_origin`` is ``logged``: a traffic row's logged label is the
    deployed model's own decision, kept because nothing contradicted it, so it can only echo that model (and where
    the model was wrong, repeat the error); ``"all"`` keeps them."""
    if scope not in ("new", "all") or admit not in ("agreed", "all"):
        raise ValueError(f"consulted_rows: scope must be 'new' or 'all' and admit 'agreed' or 'all', "
                         f"got {scope!r}, {admit!r}")
    rows = store[store["cycle"] > store["cycle"].min()] if scope == "new" and len(store) else store
    if admit == "agreed" and "label_origin" in rows:
        rows = rows[rows["label_origin"] != "logged"]
    return rows


def retrieval_generate(gen, variant: str, items: pd.DataFrame, retriever: ExampleRetriever, **gen_kw) -> dict:
    """Answers of ``variant`` (a :class:`~flywheel_lib.evaluation.VariantGenerator` variant) to ``items`` with the
    retrieved examples in the user turn. Returns ``answers``, ``shots``, ``seconds_per_item`` (retrieval and
    generation) and ``prompt_chars_ratio`` (prompt length over the bare request's: the extra cost per request)."""
    t0 = time.perf_counter()
    shots = retriever.neighbours(items)
    prompts = fewshot_prompts(items, shots)
    if variant in getattr(gen, "heads_", {}):  # a decision head reads the request, not the examples around it
        gen_kw.setdefault("head_texts", items["text"].astype(str).tolist())
    answers = gen.generate(prompts, variant=variant, **gen_kw)
    secs = time.perf_counter() - t0
    bare = items["text"].astype(str).str.len().sum()
    return {"answers": answers, "shots": shots, "seconds_per_item": secs / max(len(items), 1),
            "prompt_chars_ratio": float(sum(len(p) for p in prompts) / max(bare, 1))}


def arena_requests(items: pd.DataFrame, consensus: pd.DataFrame, store: pd.DataFrame | None, *, n: int,
                   seed: int = 7, sources: tuple[str, ...] = ("production", "traffic")) -> pd.DataFrame:
    """``n`` judged requests of ``sources`` (all, if fewer) whose label the panel accepted, stratified by it:
    ``item_id, text, label`` (accepted) and ``output`` (a known correct query, else None).

    The known query comes only from store rows that are not themselves logs of ``sources``: a logged query is the
    deployed model's own answer, and taking it as the truth would make the arena measure agreement with the deployed
    model instead of quality: its consistency, the failure mode of a static truth."""
    acc = consensus[consensus["status"] == "accepted"][["item_id", "category"]].rename(columns={"category": "label"})
    req = items[items["source"].isin(sources)][["item_id", "text"]].merge(acc, on="item_id")
    if req.empty:
        return req.assign(output=None)
    req = _stratified(req, ["label"], n, seed)
    from ..training.datasets import near_duplicate_key

    human = store[~store["source"].isin(sources)] if store is not None and len(store) else None
    q = known_queries(human) if human is not None and len(human) else {}
    return req.assign(output=[q.get(near_duplicate_key(str(t))) for t in req["text"]]).reset_index(drop=True)


def heldout_battles(slices: dict[str, tuple[pd.DataFrame, pd.DataFrame]], *, n: int, seed: int = 7,
                    ) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Arena requests from labelled held-out slices, and every model's answers to them, reused from scoring.

    ``slices``: name -> (items ``item_id, text, label, output``: the true label and a correct query; predictions
    ``item_id, variant, text``: each scored model's raw answer). ``n`` requests (all, if fewer) stratified by slice
    and label; a model battles only where it answered every sampled request. Returns the requests (``item_id`` prefixed by the
    slice name, ``text, label, output, slice``) and ``answers[model]`` in their order.
    """
    frames, texts = [], {}
    for name, (items, preds) in slices.items():
        if items is None or preds is None or not len(items):
            continue
        frames.append(items[["item_id", "text", "label", "output"]].assign(slice=name))
        for v, g in preds.groupby("variant"):
            texts.setdefault(v, {}).update({(name, i): t for i, t in zip(g["item_id"], g["text"])})
    if not frames:
        return pd.DataFrame(columns=["item_id", "text", "label", "output", "slice"]), {}
    req = _stratified(pd.concat(frames, ignore_index=True), ["slice", "label"], n, seed)
    keys = list(zip(req["slice"], req["item_id"]))
    answers = {v: ["" if pd.isna(t[k]) else str(t[k]) for k in keys]
               for v, t in texts.items() if all(k in t for k in keys)}
    req = req.assign(item_id=[f"{s}:{i}" for s, i in keys]).reset_index(drop=True)
    return req, answers


def _stratified(rows: pd.DataFrame, by: list[str], n: int, seed: int) -> pd.DataFrame:
    """Exactly ``n`` rows (all when ``n`` is 0 or more than there are), each stratum of ``by`` in proportion to
    its size by largest remainders, in the original order."""
    if not 0 < n < len(rows):
        return rows
    sizes = rows.groupby(by).size()
    quota = sizes * n / len(rows)
    take = quota.astype(int)
    take[(quota - take).sort_values(ascending=False, kind="stable").index[:n - int(take.sum())]] += 1
    picked = [g.sample(int(take[k]), random_state=seed) for k, g in rows.groupby(by) if take[k]]
    return pd.concat(picked).sort_index()


def identity_of(model: str, *, cycle: int, parent_identity: str | None) -> str:
    """A model's name along the lineage: ``c<cycle>:<variant>``; ``deployed_prev`` is the parent's deployed one."""
    if model == "deployed_prev" and parent_identity:
        return parent_identity
    return f"c{cycle}:{model}"


def rate_models(battles: pd.DataFrame, *, cycle: int, parent=None, n_boot: int = 200, seed: int = 7) -> pd.DataFrame:
    """Elo per model with bootstrap intervals, anchored so ``deployed_prev`` keeps the Elo the parent gave it.

    Returns ``model, identity, elo, elo_lo, elo_hi, wins, losses, ties, battles``.
    """
    anchor_elo, parent_identity = 1000.0, None
    if parent is not None:
        winner = ((parent.records_of("05_evaluate").get("notes") or {}).get("promotion") or {}).get("winner")
        if winner and parent.exists("arena"):
            prev = parent.read("arena").set_index("model")
            if winner in prev.index:
                anchor_elo, parent_identity = float(prev.loc[winner, "elo"]), str(prev.loc[winner, "identity"])
        if winner and parent_identity is None:
            b = (parent.records_of("05_evaluate").get("notes") or {}).get("baseline") or {}
            parent_identity = f"c{cycle - 1}:{b.get('parent_variant', winner) if winner == 'deployed_prev' else winner}"
    bt = BradleyTerry(n_boot=n_boot, seed=seed, anchor="deployed_prev", anchor_elo=anchor_elo).fit(battles)
    r = bt.ratings_
    r.insert(1, "identity", [identity_of(m, cycle=cycle, parent_identity=parent_identity) for m in r["model"]])
    return r
