"""Judge drift across cycles: each judge's agreement with human labels, re-measured every cycle.

Every cycle's ``01_calibrate`` scores the judges on a *fresh* human sample: the hold-out slice this cycle has not
used before (:func:`fresh_slice`: the hold-out is cut into ``n_slices`` deterministic slices, cycle ``c`` takes slice
``(c - 1) mod n_slices``). It records ``kappa_<judge>_cycle`` with its interval. :func:`drift_table` stacks these over
a lineage and :func:`drift_alarm` raises the alarm for a judge whose kappa in a later cycle falls outside the first
cycle's 95% interval.

>>> t = pd.DataFrame({"judge": ["j"] * 3, "cycle": [1, 2, 3], "kappa": [0.8, 0.78, 0.5],
...                   "kappa_lo": [0.7, 0.68, 0.4], "kappa_hi": [0.9, 0.88, 0.6]})
>>> drift_alarm(t)["alarm"].tolist()
[False, False, True]
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

__all__ = ["fresh_slice", "slice_kappa", "drift_table", "drift_alarm"]


def fresh_slice(item_ids, *, cycle: int, n_slices: int = 4, seed: int = 0) -> np.ndarray:
    """Boolean mask: the items of ``item_ids`` in this cycle's slice (by a hash of the id, so stable)."""
    if n_slices < 1 or cycle < 1:
        raise ValueError(f"need n_slices >= 1 and cycle >= 1, got {n_slices}, {cycle}")
    want = (cycle - 1) % n_slices
    return np.array([int(hashlib.sha256(f"{seed}\0{i}".encode()).hexdigest(), 16) % n_slices == want
                     for i in item_ids], dtype=bool)


def slice_kappa(verdicts: pd.DataFrame, gold: pd.Series, *, labels: list[str]) -> pd.DataFrame:
    """Each judge's kappa (95% interval) on the items of ``gold`` (the calibration report on a subset)."""
    from ..curation.calibration import judge_report

    v = verdicts[verdicts["item_id"].isin(gold.index)]
    return judge_report(v, gold, labels=labels)[["judge", "n", "kappa", "kappa_lo", "kappa_hi"]]


def drift_table(chain) -> pd.DataFrame:
    """``judge, cycle, kappa, kappa_lo, kappa_hi, run_id`` from every run's ``01_calibrate`` metrics
    (``kappa_<judge>_cycle`` and its ``_lo`` / ``_hi``)."""
    rows = []
    for i, run in enumerate(chain):
        m = (run.manifest.get("metrics") or {}).get("01_calibrate", {})
        cycle = int((run.manifest.get("parent") or {}).get("cycle") or i + 1)
        for k, v in m.items():
            if k.startswith("kappa_") and k.endswith("_cycle"):
                judge = k[len("kappa_"):-len("_cycle")]
                rows.append({"judge": judge, "cycle": cycle, "kappa": v, "kappa_lo": m.get(f"{k}_lo"),
                             "kappa_hi": m.get(f"{k}_hi"), "run_id": run.run_id})
    cols = ["judge", "cycle", "kappa", "kappa_lo", "kappa_hi", "run_id"]
    return pd.DataFrame(rows, columns=cols).astype({"kappa": float, "kappa_lo": float, "kappa_hi": float})


def drift_alarm(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with ``alarm``: the judge's kappa in this cycle lies outside its first cycle's interval."""
    out = table.sort_values(["judge", "cycle"]).reset_index(drop=True).copy()
    out["alarm"] = False
    for _, g in out.groupby("judge"):
        first = g.iloc[0]
        lo, hi = first["kappa_lo"], first["kappa_hi"]
        if pd.isna(lo) or pd.isna(hi):
            continue
        later = g.index[1:]
        k = out.loc[later, "kappa"]
        out.loc[later, "alarm"] = ((k < lo) | (k > hi)).fillna(False).to_numpy()
    return out
