"""Lever 1 in a lineage: what the example store decides on a later cycle's drift slice, with the labels it holds
and with the simulator's true labels for the same rows, and how its labels entered the corpus.

Reads run folders only (no training, no decoding): the store the deployed model's head consults in 05
(``retrieval.scope: new``, the rows added after the lineage's first cycle), the drift slice, the deployed model's
scored answers there, each cycle's consensus and resolutions, and the truth tables of the lineage's runs (the
bundled simulator's, so this measures generated lineages only). For each ``min_score`` it prints how many drift
items the store decides, how often its label is the truth, and against the deployed model's own decision how many
it fixes and breaks; then the same with every stored row carrying its true label, which separates what the
labels cost from what the neighbours cost.

The ``agreed`` rows are the ones 05 consults by default (``retrieval.admit: agreed``): every row whose label the
panel, a person or the tree decided, read from the store's ``label_origin`` (stores written before that column
existed: the rows not kept with their logged label).

``--overrule`` names the rules printed (``retrieval.overrule``): ``refusals`` (the default: the store never withdraws
a refusal the deployed model made) and ``both`` (the store's label decides either way).

    python benchmarks/bench_store_labels.py RUN_ID [RUN_ID ...] --scores 0.6,0.65,0.7,0.8 --share 0.75 \
        --overrule refusals,both
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _truth(chain) -> dict:
    import pandas as pd

    frames = [run.read(name)[["item_id", "true_label"]] for run in chain
              for name in ("truth", "traffic_truth") if run.exists(name)]
    t = pd.concat(frames).drop_duplicates("item_id", keep="last")
    return dict(zip(t["item_id"], t["true_label"]))


def _origins(chain) -> tuple[dict, dict]:
    """item_id -> how its label entered the corpus in the cycle that added it (review, panel, kept_production),
    and item_id -> the label the deployed model logged for it."""
    out: dict = {}
    logged: dict = {}
    for run in chain[1:]:
        cons = run.read("consensus").set_index("item_id")["status"]
        res = run.read("resolutions").drop_duplicates("item_id", keep="last").set_index("item_id")
        for iid, r in res.iterrows():
            out[iid] = ("review" if r["decided_by"] == "human" else
                        "panel" if cons.get(iid) == "accepted" else "kept_production")
            logged[iid] = r["label_before"]
    return out, logged


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="later-cycle runs (ids or folders) with a drift slice")
    ap.add_argument("--scores", default="0.6,0.65,0.7,0.8")
    ap.add_argument("--share", type=float, default=0.75)
    ap.add_argument("-k", type=int, default=5)
    ap.add_argument("--overrule", default="refusals,both", help="comma-separated: refusals, both")
    a = ap.parse_args()


    from flywheel_lib.flywheel.lineage import lineage_chain
    from flywheel_lib.levers import ExampleRetriever
    from flywheel_lib.levers.cycle import consulted_rows
    from flywheel_lib.levers.store_head import StoreConsultedHead
    from flywheel_lib.paths import find_run

    class _NoHead:
        solvable_id_ = "solvable"

    for rid in a.runs:
        chain = lineage_chain(find_run(rid))
        run = chain[-1]
        truth, (origin, logged) = _truth(chain), _origins(chain)
        store = run.read("example_store")
        new = store[store["cycle"] > store["cycle"].min()].copy()
        new["origin"] = [origin.get(i, "unknown") for i in new["item_id"]]
        new["true_label"] = [truth.get(i) for i in new["item_id"]]
        new["right"] = new["label"] == new["true_label"]
        new["corrected"] = [logged.get(i) is not None and logged.get(i) != lab for i, lab in zip(new["item_id"],
                                                                                             new["label"])]
        print(f"\n{run.run_id}: {len(new)} stored rows consulted (added after cycle {int(store['cycle'].min())})")
        print(new.groupby(["origin", "corrected"]).agg(rows=("right", "size"), label_right=("right", "mean"))
              .round(3).to_string())
        items = run.read("drift_items")
        pred = run.read("drift_predictions")
        dep = pred[pred["variant"] == "deployed_prev"].set_index("item_id")
        dep_label = dep["refusal_category"].where(dep["refused"], "solvable").reindex(items["item_id"]).to_numpy()
        newest = (items["scenario_cycle"] == items["scenario_cycle"].max()).to_numpy()  # the cycle-before's scenarios
        orig = run.read("predictions")
        orig = orig[orig["variant"] == "deployed_prev"]
        orig_dep = orig["refusal_category"].where(orig["refused"], "solvable").to_numpy()
        print(f"{'labels':>13} {'overrule':>8} {'min_score':>9} {'drift decided':>13} {'right':>6} {'fixes':>6} {'breaks':>7} "
              f"{'of them new':>11} {'original decided':>16} {'fixes':>6} {'breaks':>6}")
        variants = (("stored", new), ("true", new.assign(label=new["true_label"])),
                    ("changed", new[new["corrected"]]),  # only the rows curation corrected
                    ("agreed", consulted_rows(new, scope="all", admit="agreed") if "label_origin" in new
                     else new[new["origin"] != "kept_production"]))
        for name, rows in variants:
            ret = ExampleRetriever(rows[rows["label"].notna()], k=a.k)
            for rule, s in [(r, float(x)) for r in a.overrule.split(",") for x in a.scores.split(",")]:
                head = StoreConsultedHead(_NoHead(), ret, min_score=s, min_share=a.share)
                d = _effect(head.store_labels(items["text"].astype(str).tolist()), items["label"], dep_label, newest,
                            overrule=rule)
                o = _effect(head.store_labels(orig["text"].astype(str).tolist()), orig["label"], orig_dep,
                            [False] * len(orig), overrule=rule)
                print(f"{name:>13} {rule:>8} {s:9.2f} {d['decided']:7d}/{len(items):<5d} {d['right']:6.3f} {d['fixes']:6d} "
                      f"{d['breaks']:7d} {d['new_fixes']:5d}/{d['new_breaks']:<5d} {o['decided']:10d}/{len(orig):<5d} "
                      f"{o['fixes']:6d} {o['breaks']:6d}")


def _effect(store_labels, truth, deployed, new, overrule: str = "both") -> dict:
    """Where the store decides: how often it is right, what it fixes and breaks against the deployed model
    (``overrule="refusals"``: not where it would withdraw the deployed model's refusal)."""
    import pandas as pd

    from flywheel_lib.levers.store_head import store_decision

    decided = [store_decision(s, dep, solvable_id="solvable", overrule=overrule)
               for s, dep in zip(store_labels, deployed)]
    d = pd.DataFrame({"store": decided, "truth": list(truth), "deployed": list(deployed),
                      "new": list(new)}).dropna(subset=["store"])
    ok = d["store"] == d["truth"]
    fixes, breaks = ok & (d["deployed"] != d["truth"]), ~ok & (d["deployed"] == d["truth"])
    return {"decided": len(d), "right": float(ok.mean()) if len(d) else float("nan"), "fixes": int(fixes.sum()),
            "breaks": int(breaks.sum()), "new_fixes": int((fixes & d["new"]).sum()),
            "new_breaks": int((breaks & d["new"]).sum())}


if __name__ == "__main__":
    main()
