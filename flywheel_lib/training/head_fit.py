"""Fitting the decision heads of 04_finetune: every variant's head (:func:`fit_heads`) and a head's operating point
chosen out of fold over held-out phrasing clusters (:func:`calibrate_threshold`, on
:func:`out_of_fold_scores` over :func:`phrasing_clusters`)."""

from __future__ import annotations

import time

import numpy as np

from .head import HEAD_ROWS, HEADS, DecisionHead, _embed, _refusal_scores

THRESHOLD_GRID = tuple(round(0.2 + 0.05 * i, 2) for i in range(16))
"""Refusal thresholds :func:`calibrate_threshold` considers (0.20 ... 0.95)."""


def phrasing_clusters(X: np.ndarray, *, clusters: int = 20, seed: int = 7) -> np.ndarray:
    """k-means clusters of sentence embeddings ``X`` (at most ``clusters``, about ten rows each at least): the
    groups :func:`out_of_fold_scores` holds out whole, the way the eval set holds out whole phrasing families."""
    from sklearn.cluster import KMeans

    k = max(2, min(clusters, len(X) // 10))
    return KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(X)


def out_of_fold_scores(texts, labels, groups: np.ndarray, *, C: float = 8.0, solvable_id: str = "solvable",
                       folds: int = 5, encoder: str = "minilm") -> tuple[np.ndarray, np.ndarray]:
    """Per row: P(not solvable) and the likeliest refusal category, from a head fitted without the row's group
    (GroupKFold over ``groups``, e.g. :func:`phrasing_clusters`). NaN where a fold's training rows hold one class."""
    from sklearn.model_selection import GroupKFold

    texts, labels = [str(t) for t in texts], np.asarray([str(y) for y in labels], dtype=object)
    p_refuse = np.full(len(texts), np.nan)
    best = np.empty(len(texts), dtype=object)
    for tr, te in GroupKFold(min(folds, len(set(groups)))).split(texts, groups=groups):
        if len(set(labels[tr])) < 2:
            continue
        h = DecisionHead(C=C, encoder=encoder).fit([texts[i] for i in tr], labels[tr], solvable_id=solvable_id)
        p_refuse[te], best[te] = _refusal_scores(h.predict_proba([texts[i] for i in te]), h.classes_, solvable_id)
    return p_refuse, best


def calibrate_threshold(texts, labels, *, max_false_refusal: float, C: float = 8.0, solvable_id: str = "solvable",
                        folds: int = 5, clusters: int = 20, seed: int = 7, encoder: str = "minilm") -> dict:
    """The operating point of a head, chosen on its own training rows: the lowest refusal threshold whose
    false-refusal rate, measured out of fold over *held-out phrasing clusters*, is at most ``max_false_refusal``.

    An eval set of unseen phrasings punishes a threshold tuned on rows like the training rows, so the rows are
    grouped by k-means clusters of their sentence embeddings and whole clusters are held out (GroupKFold), the way
    the eval set holds out whole phrasing families. Returns ``threshold`` (the highest of the grid when none meets
    the target: ``met`` False), and the out-of-fold ``false_refusal_rate`` and ``refusal_recall`` (right category)
    at it. Never reads an eval row."""
    texts, labels = [str(t) for t in texts], np.asarray([str(y) for y in labels], dtype=object)
    groups = phrasing_clusters(_embed(texts), clusters=clusters, seed=seed)
    p_refuse, best = out_of_fold_scores(texts, labels, groups, C=C, solvable_id=solvable_id, folds=folds,
                                        encoder=encoder)
    solv = labels == solvable_id
    ok = ~np.isnan(p_refuse)
    rows = []
    for t in THRESHOLD_GRID:
        ref = ok & (p_refuse >= t)
        frr = float(ref[solv & ok].mean()) if (solv & ok).any() else 0.0
        imp = ~solv & ok
        rec = float((ref[imp] & (best[imp] == labels[imp])).mean()) if imp.any() else 0.0
        rows.append({"threshold": t, "false_refusal_rate": round(frr, 4), "refusal_recall": round(rec, 4)})
    meets = [r for r in rows if r["false_refusal_rate"] <= max_false_refusal]
    pick = meets[0] if meets else rows[-1]
    return {**pick, "met": bool(meets), "max_false_refusal": max_false_refusal, "clusters": int(len(set(groups))),
            "curve": rows}


def fit_heads(datasets: dict, kind: str, folders: dict, *, backend: str = "local-lora", C: float = 8.0,
              refusal_threshold: float = 0.5, solvable_id: str = "solvable",
              max_false_refusal: float = 0.0, rows: str = "all", refusal_share: float | None = None,
              seed: int = 7, epochs: float = 1.0, lr: float = 1e-4, members: int = 1) -> dict[str, dict]:
    """``04_finetune``'s step: one head per variant (``datasets``: variant -> BuiltDataset), fitted on the variant's
    training rows and saved in its adapter folder (``folders``: variant -> folder). Returns, per variant, the head's
    classes, rows, threshold and its accuracy and false-refusal rate on the variant's own validation rows.

    ``rows`` (one of :data:`HEAD_ROWS`): ``"all"`` fits on every refusal row of the variant's training split with
    solvable rows drawn so refusals are ``refusal_share`` of them (:func:`~flywheel_lib.training.datasets.head_rows`;
    None: each dataset's ``target_refusal_share``, the share its adapter's rows were drawn to);
    ``"train"`` on exactly the rows its adapter trains on (``max_steps x batch_size`` of them with ``n_train``).
    ``max_false_refusal > 0`` picks each head's threshold with :func:`calibrate_threshold` on its rows instead of
    ``refusal_threshold``. ``kind`` is one of :data:`HEADS` (the head's encoder); ``"none"`` fits nothing and
    returns ``{}``; ``epochs``, ``lr`` and ``members`` (encoders averaged) are the ``"finetuned"`` head's (``seed``
    also orders its batches)."""
    from .datasets import head_rows

    if kind not in HEADS:
        raise ValueError(f"decision_head must be one of {', '.join(HEADS)}, got {kind!r}")
    if rows not in HEAD_ROWS:
        raise ValueError(f"head_rows must be one of {', '.join(HEAD_ROWS)}, got {rows!r}")
    if kind == "none":
        return {}
    if backend != "local-lora":
        raise ValueError(f"decision_head {kind!r} needs backend 'local-lora' (the head runs beside a local adapter); "
                         f"got backend {backend!r}: set decision_head: none")
    out = {}
    if not 0.0 <= max_false_refusal < 1.0:
        raise ValueError(f"head_max_false_refusal must be in [0, 1), got {max_false_refusal}")
    if max_false_refusal > 0 and kind == "finetuned":
        raise ValueError("head_max_false_refusal calibrates the threshold out of fold, refitting the head per fold: "
                         "it needs a logistic-regression head (decision_head minilm or hybrid), not 'finetuned'")
    if members != 1 and kind != "finetuned":
        raise ValueError(f"head_members {members} averages fine-tuned encoders: it needs decision_head 'finetuned', "
                         f"not {kind!r} (a logistic-regression head is deterministic): set head_members: 1")
    if refusal_share is not None and not 0.0 < refusal_share < 1.0:
        raise ValueError(f"head_refusal_share must be in (0, 1), got {refusal_share}")
    for v, ds in datasets.items():
        share = ds.target_refusal_share if refusal_share is None else refusal_share
        fit_rows = (head_rows(ds.train_pool, refusal_share=share, solvable_id=solvable_id, seed=seed)
                    if rows == "all" else ds.train)
        threshold, cal = refusal_threshold, None
        if max_false_refusal > 0 and fit_rows["label"].nunique() > 1:
            cal = calibrate_threshold(fit_rows["text"], fit_rows["label"], max_false_refusal=max_false_refusal,
                                      C=C, solvable_id=solvable_id, encoder=kind)
            threshold = cal["threshold"]
        head = DecisionHead(C=C, refusal_threshold=threshold, encoder=kind, epochs=epochs, lr=lr, seed=seed,
                            members=members)
        t0 = time.perf_counter()
        head.fit(fit_rows["text"], fit_rows["label"], solvable_id=solvable_id)
        fit_seconds = round(time.perf_counter() - t0, 1)
        head.save(folders[v])
        val = ds.validation
        row = {"classes": len(head.classes_), "n_fit": head.n_fit_,
               "n_fit_refusals": int((fit_rows["label"] != solvable_id).sum()), "threshold": threshold,
               "fit_seconds": fit_seconds, "final_loss": head.losses_[-1] if head.losses_ else None,
               "cv_false_refusal_rate": cal["false_refusal_rate"] if cal else None,
               "cv_refusal_recall": cal["refusal_recall"] if cal else None,
               "threshold_met_target": cal["met"] if cal else None, "n_validation": len(val),
               "val_accuracy": None, "val_false_refusal_rate": None}
        if len(val):
            pred = np.asarray(head.predict(val["text"]), dtype=object)
            gold = val["label"].astype(str).to_numpy()
            solv = gold == solvable_id
            row["val_accuracy"] = round(float((pred == gold).mean()), 4)
            row["val_false_refusal_rate"] = round(float((pred[solv] != solvable_id).mean()), 4) if solv.any() else None
        out[v] = row
    return out
