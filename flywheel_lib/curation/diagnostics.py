"""Selection-bias diagnostics: does the curated set look like the production pool it was selected from?

A gate that keeps only the items every judge agrees on keeps the easy ones: short requests, one-condition queries,
the phrasing families the judges know. :func:`selection_bias` compares, per category, the curated rows that came
from production with the production pool of that category on

- **region coverage**: the share of each phrasing family (a generator's hidden ``family`` where the data has it,
  else a TF-IDF k-means cluster of the pool's requests) in the pool and in the curated rows; the smallest ratio
  ``curated share / pool share`` over the regions the pool really has (``min_region_rows``) and the total
  variation distance between the two distributions;
- **query complexity** (given a ``complexity`` function, e.g.
  :func:`flywheel_lib.domains.segments.complexity.query_complexity`): mean AND/OR clauses, functions and relative
  dates per query, over the rows with an output;
- **request length** in words.

Every dimension gets a ratio of means (curated / pool; 1 means no bias) and a total variation distance between the
value distributions (``0`` same, ``1`` disjoint; lengths in 5-word bins). A region whose share ratio is under
``min_share_ratio`` and a mean outside ``1 +- tolerance`` give a warning a notebook shows.

>>> import pandas as pd
>>> pool = pd.DataFrame({"item_id": list("abcd"), "category": "solvable", "text": ["x y", "x y z", "x", "x y"],
...                      "output": None, "family": ["f1", "f1", "f2", "f2"]})
>>> rep = selection_bias(pool[pool.item_id.isin(["a", "b"])], pool, min_region_rows=1)
>>> rep.warnings[0]
"solvable: region 'f2' has 50% of the pool and 0% of the curated rows (share ratio 0.00 < 0.5)"
>>> round(rep.metric("solvable", "length", "ratio"), 3)
1.25
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ._votes import is_missing

__all__ = ["BiasReport", "selection_bias", "cluster_regions", "complexity_for", "resolution_summary",
           "production_pool", "compare_policies", "compare_gate_policies", "policy_summary"]


@dataclass
class BiasReport:
    """What :func:`selection_bias` found."""

    dimensions: pd.DataFrame
    """One row per category and dimension: ``category, dimension, pool_mean, curated_mean, ratio, tvd, n_pool,
    n_curated`` (``region`` rows: ``pool_mean``/``curated_mean`` empty, ``ratio`` the smallest share ratio)."""
    regions: pd.DataFrame
    """One row per category and region: ``category, region, n_pool, n_curated, pool_share, curated_share,
    share_ratio``."""
    region_source: str
    """Where the regions come from: ``family`` (the data's phrasing families) or ``tfidf_kmeans``."""
    warnings: list[str] = field(default_factory=list)
    """Human-readable warnings: dropped regions, means outside the tolerance."""
    min_share_ratio: float = 0.5
    """The share ratio under which a region counts as dropped."""

    def metric(self, category: str, dimension: str, column: str = "ratio") -> float:
        """One figure of :attr:`dimensions` (NaN when the category or dimension is absent)."""
        d = self.dimensions
        hit = d[(d["category"] == category) & (d["dimension"] == dimension)]
        return float(hit[column].iloc[0]) if len(hit) else float("nan")


_CACHED: dict = {}


def complexity_for(domain) -> Callable | None:
    """The query-complexity function of a domain (``None`` when it has none), memoised per distinct query so that
    comparing several policies on the same pool parses each query once."""
    fn = getattr(domain, "complexity", None)
    if not callable(fn) and getattr(domain, "name", None) == "segments":
        from ..domains.segments.complexity import query_complexity as fn
    if not callable(fn):
        return None
    if fn not in _CACHED:
        _CACHED[fn] = functools.lru_cache(maxsize=200_000)(fn)
    return _CACHED[fn]


def cluster_regions(texts: pd.Series, *, k: int = 12, seed: int = 7) -> np.ndarray:
    """TF-IDF (word 1-2 grams) k-means cluster ids of ``texts``: regions for data without phrasing families."""
    from sklearn.cluster import KMeans
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = texts.fillna("").astype(str)
    k = max(1, min(k, texts.nunique()))
    x = TfidfVectorizer(ngram_range=(1, 2), min_df=2 if len(texts) > 50 else 1, sublinear_tf=True).fit_transform(texts)
    return KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(x)


def _tvd(a: pd.Series, b: pd.Series) -> float:
    if not len(a) or not len(b):
        return float("nan")
    pa, pb = a.value_counts(normalize=True), b.value_counts(normalize=True)
    idx = pa.index.union(pb.index)
    return float(0.5 * (pa.reindex(idx, fill_value=0) - pb.reindex(idx, fill_value=0)).abs().sum())


def _ratio(cur: float, pool: float) -> float:
    if pd.isna(cur) or pd.isna(pool):
        return float("nan")
    if pool == 0:
        return 1.0 if cur == 0 else float("inf")
    return float(cur / pool)


def selection_bias(
    curated: pd.DataFrame,
    pool: pd.DataFrame,
    *,
    complexity: Callable | None = None,
    category: str = "category",
    curated_category: str | None = None,
    min_share_ratio: float = 0.5,
    tolerance: float = 0.1,
    min_region_rows: int = 20,
    n_clusters: int = 12,
    seed: int = 7,
) -> BiasReport:
    """Compare ``curated`` (rows selected from ``pool``: ``item_id, text, output`` and a category column) with
    ``pool`` (``item_id, text, output``, ``category`` and optionally ``family``), per category.

    ``curated_category``: the curated rows' category column (default: the same name as ``category``).
    Regions come from the pool's ``family`` column when it has one, else from :func:`cluster_regions` fitted on
    the pool (curated rows take their pool row's cluster; rows not in the pool are clustered as unknown ``-1``).
    """
    ccat = curated_category or category
    for name, df, cols in (("pool", pool, ("item_id", "text", category)), ("curated", curated, ("item_id", "text", ccat))):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise ValueError(f"selection_bias: the {name} table lacks columns: {', '.join(missing)}")
    pool = pool.copy()
    if "family" in pool.columns and pool["family"].notna().any():
        pool["region"] = pool["family"].astype(object).where(pool["family"].notna(), "<none>")
        source = "family"
    else:
        pool["region"] = [f"c{c:02d}" for c in cluster_regions(pool["text"], k=n_clusters, seed=seed)]
        source = "tfidf_kmeans"
    cur = curated[["item_id", "text", ccat] + (["output"] if "output" in curated.columns else [])].rename(
        columns={ccat: "_cat"})
    cur["region"] = cur["item_id"].map(pool.set_index("item_id")["region"]).fillna("<not in pool>")
    pool = pool.rename(columns={category: "_cat"})
    for df in (pool, cur):
        df["length"] = df["text"].fillna("").astype(str).str.split().str.len()
        if complexity is not None and "output" in df.columns:
            cx = [complexity(o) if not is_missing(o) else None for o in df["output"]]
            for key in ("clauses", "functions", "relative_dates"):
                df[key] = [np.nan if c is None else c.get(key, np.nan) for c in cx]
    dims, regs, warns = [], [], []
    for cat in sorted(set(pool["_cat"].dropna()) & set(cur["_cat"].dropna())):
        p, c = pool[pool["_cat"] == cat], cur[cur["_cat"] == cat]
        # regions
        n_p, n_c = p["region"].value_counts(), c["region"].value_counts()
        shares = []
        for reg in n_p.index:
            sp, sc = n_p[reg] / len(p), n_c.get(reg, 0) / len(c)
            ratio = sc / sp
            regs.append({"category": cat, "region": reg, "n_pool": int(n_p[reg]), "n_curated": int(n_c.get(reg, 0)),
                         "pool_share": sp, "curated_share": sc, "share_ratio": ratio})
            if n_p[reg] >= min_region_rows:
                shares.append(ratio)
                if ratio < min_share_ratio:
                    warns.append(f"{cat}: region {reg!r} has {sp:.0%} of the pool and {sc:.0%} of the curated rows "
                                 f"(share ratio {ratio:.2f} < {min_share_ratio})")
        dims.append({"category": cat, "dimension": "region", "pool_mean": np.nan, "curated_mean": np.nan,
                     "ratio": min(shares) if shares else np.nan, "tvd": _tvd(p["region"], c["region"]),
                     "n_pool": len(p), "n_curated": len(c)})
        for dim in ("length", "clauses", "functions", "relative_dates"):
            if dim not in p.columns:
                continue
            a, b = p[dim].dropna(), c[dim].dropna()
            if not len(a) or not len(b):
                continue
            bins = (lambda s: (s // 5) * 5) if dim == "length" else (lambda s: s)
            r = _ratio(b.mean(), a.mean())
            dims.append({"category": cat, "dimension": dim, "pool_mean": float(a.mean()), "curated_mean": float(b.mean()),
                         "ratio": r, "tvd": _tvd(bins(a), bins(b)), "n_pool": len(a), "n_curated": len(b)})
            if dim in ("length", "clauses") and len(a) >= min_region_rows and abs(r - 1) > tolerance:
                warns.append(f"{cat}: mean {dim} is {b.mean():.2f} in the curated rows against {a.mean():.2f} in the "
                             f"pool (ratio {r:.2f}, outside 1 +- {tolerance})")
    dim_cols = ["category", "dimension", "pool_mean", "curated_mean", "ratio", "tvd", "n_pool", "n_curated"]
    reg_cols = ["category", "region", "n_pool", "n_curated", "pool_share", "curated_share", "share_ratio"]
    return BiasReport(pd.DataFrame(dims, columns=dim_cols), pd.DataFrame(regs, columns=reg_cols), source, warns,
                      min_share_ratio)


def resolution_summary(resolutions: pd.DataFrame, truth: pd.DataFrame | None = None, *, queue_size: int | None = None) -> dict:
    """One column of a gate-scope comparison: rows in the curated set per label, rows opted out, the review queue,
    and (given ``truth``: ``item_id, true_label``) the precision of the kept labels against the truth, overall and
    for solvable / non-solvable labels."""
    inset = resolutions[resolutions["action"] != "opt_out"]
    out: dict = {f"kept {k}": int(n) for k, n in inset["label_after"].value_counts().sort_index().items()}
    out["in curated set"] = int(len(inset))
    out["opted out"] = int((resolutions["action"] == "opt_out").sum())
    if queue_size is not None:
        out["review queue"] = int(queue_size)
    if truth is not None and "true_label" in truth.columns:
        t = truth.drop_duplicates("item_id").set_index("item_id")["true_label"]
        ok = inset["label_after"].to_numpy() == t.reindex(inset["item_id"]).to_numpy()
        known = t.reindex(inset["item_id"]).notna().to_numpy()
        solv = (inset["category_kind"] == "solvable").to_numpy()
        for name, m in (("precision vs truth", known), ("precision solvable", known & solv),
                        ("precision refusal/clarify", known & ~solv)):
            out[name] = round(float(ok[m].mean()), 4) if m.any() else float("nan")
    return out


def production_pool(items: pd.DataFrame, truth: pd.DataFrame | None = None, *,
                    sources=("production", "traffic")) -> pd.DataFrame:
    """The pool the curated rows are selected from: ``item_id, text, output, category`` (the truth's
    ``true_label`` where it has one, else the logged label) and ``family`` where the truth has it."""
    prod = items[items["source"].isin(sources)]
    pool = prod[["item_id", "text", "output", "label"]].rename(columns={"label": "category"}).copy()
    if truth is not None and len(truth):
        t = truth.drop_duplicates("item_id").set_index("item_id")
        if "true_label" in t.columns:
            pool["category"] = pool["item_id"].map(t["true_label"]).fillna(pool["category"])
        if "family" in t.columns:
            pool["family"] = pool["item_id"].map(t["family"])
    return pool


def compare_policies(policies: dict, items: pd.DataFrame, taxonomy, *, truth: pd.DataFrame | None = None,
                     complexity: Callable | None = None, min_share_ratio: float = 0.5) -> pd.DataFrame:
    """One column per policy (``name -> resolutions``, all from the same verdicts): the rows of
    :func:`resolution_summary` (review queue included) plus the solvable rows' selection-bias ratios (clauses,
    length, smallest region share) against the production pool. (:func:`policy_summary` makes one column at a
    time, for corpora where several resolution tables at once would not fit.)"""
    pool = production_pool(items, truth)
    return pd.DataFrame({name: policy_summary(res, items, taxonomy, truth=truth, complexity=complexity,
                                              min_share_ratio=min_share_ratio, pool=pool)
                         for name, res in policies.items()})


def compare_gate_policies(items: pd.DataFrame, consensus: pd.DataFrame, taxonomy, *, keep: str,
                          truth: pd.DataFrame | None = None, complexity: Callable | None = None,
                          min_share_ratio: float = 0.5, **resolve_kw) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every gate policy (``all`` and ``changes/<contradiction>``) resolved on the same verdicts and summarised as
    :func:`compare_policies` does, one resolution table at a time (a million-row corpus need not hold four at once).
    Returns the table and the resolutions of policy ``keep``; ``resolve_kw`` go to
    :func:`~flywheel_lib.curation.resolve.resolve` (``conflicts``, ``reviewed``, ``output_valid``)."""
    from .datasets import parse_policy
    from .resolve import CONTRADICTIONS, resolve

    names = ["all", *(f"changes/{c}" for c in CONTRADICTIONS)]
    if keep not in names:
        raise ValueError(f"compare_gate_policies: keep must be one of {', '.join(names)}, got {keep!r}")
    pool = production_pool(items, truth)
    cols, kept = {}, None
    for name in names:
        scope, contradiction, _ = parse_policy(name)
        res = resolve(items, consensus, taxonomy, gate_scope=scope, contradiction=contradiction, **resolve_kw)
        cols[name] = policy_summary(res, items, taxonomy, truth=truth, complexity=complexity,
                                    min_share_ratio=min_share_ratio, pool=pool)
        if name == keep:
            kept = res
    return pd.DataFrame(cols), kept


def policy_summary(resolutions: pd.DataFrame, items: pd.DataFrame, taxonomy, *, truth: pd.DataFrame | None = None,
                   complexity: Callable | None = None, min_share_ratio: float = 0.5,
                   pool: pd.DataFrame | None = None) -> dict:
    """One column of :func:`compare_policies`; ``pool``: :func:`production_pool` of ``items``, when several
    policies share it."""
    from .datasets import build_train_sets
    from .review import review_queue

    pool = production_pool(items, truth) if pool is None else pool
    s = resolution_summary(resolutions, truth if truth is not None and "true_label" in truth.columns else None,
                           queue_size=len(review_queue(resolutions, items, taxonomy=taxonomy)))
    ts = build_train_sets(items, resolutions, taxonomy, variants=("curated",))
    cur = ts[ts["item_id"].isin(pool["item_id"])]
    rep = selection_bias(cur, pool, complexity=complexity, curated_category="label",
                         min_share_ratio=min_share_ratio)
    for label, dim in (("clauses", "clauses"), ("length", "length"), ("min region share", "region")):
        val = rep.metric(taxonomy.solvable_id, dim)
        s[f"solvable {label} ratio"] = None if pd.isna(val) else round(val, 3)
    s["bias warnings"] = len(rep.warnings)
    return s
