"""The workbench's Dawid-Skene against crowd-kit's, on the verdicts of a run: same labels? same precision?

    PYTHONPATH=$PWD python benchmarks/bench_dawid_skene.py RUN_DIR [RUN_DIR ...]     # needs `pip install crowd-kit`

For each run: the out-of-fold calibration verdicts (01_calibrate, scored against the seed's human labels) and the
production verdicts (02_judge, scored against the hidden truth where the run has one). Both aggregators get the same
votes (abstentions are not votes). Prints, per slice: items, the share where the two give the same label, each one's
accuracy against the reference labels, and seconds. crowd-kit's ``DawidSkene`` starts from the majority vote and
knows only the classes that someone voted for; the workbench's also starts from the calibration confusions
(``init_confusion``) and keeps every taxonomy class. Not a test.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd

from flywheel_lib.curation.consensus import DawidSkene


def _votes(verdicts: pd.DataFrame) -> pd.DataFrame:
    return verdicts[verdicts["category"].notna()]


def compare(verdicts: pd.DataFrame, reference: pd.Series, labels: list[str]) -> dict:
    from crowdkit.aggregation import DawidSkene as CrowdKitDS

    votes = _votes(verdicts)
    t0 = time.perf_counter()
    ds = DawidSkene(labels=labels).fit(votes)
    t_ours = time.perf_counter() - t0
    ours = pd.Series(list(ds.labels_), index=ds.votes_.index)
    t0 = time.perf_counter()
    ck = CrowdKitDS(n_iter=100, tol=1e-6).fit_predict(
        votes.rename(columns={"item_id": "task", "judge": "worker", "category": "label"})[["task", "worker", "label"]])
    t_ck = time.perf_counter() - t0
    both = ours.index.intersection(ck.index).intersection(reference.index)
    return {"items": len(both), "same_label": float((ours[both] == ck[both]).mean()),
            "accuracy_workbench": float((ours[both] == reference[both]).mean()),
            "accuracy_crowdkit": float((ck[both] == reference[both]).mean()),
            "seconds_workbench": round(t_ours, 3), "seconds_crowdkit": round(t_ck, 3)}


def main() -> None:
    from flywheel_lib.stage import open_run
    from flywheel_lib.taxonomy import load_taxonomy

    rows = []
    for ref in sys.argv[1:] or ["latest"]:
        run = open_run(ref)
        tax_path = (run.manifest.get("params_in_effect") or {}).get("01_calibrate", {}).get(
            "taxonomy", "params/taxonomy/segments.yaml")
        labels = load_taxonomy(tax_path).ids
        items = run.read("items")
        gold = items.set_index("item_id")["label"]
        rows.append({"run": run.run_id, "slice": "seed, out of fold",
                     **compare(run.read("calibration_verdicts"), gold, labels)})
        if run.exists("truth") and "true_label" in run.read("truth").columns and run.exists("verdicts"):
            truth = run.read("truth").set_index("item_id")["true_label"]
            rows.append({"run": run.run_id, "slice": "production vs truth",
                         **compare(run.read("verdicts"), truth, labels)})
    with pd.option_context("display.width", 160):
        print(pd.DataFrame(rows).round(4).to_string(index=False))
    print(f"(python {sys.version.split()[0]}; {Path('/proc/cpuinfo').read_text().split('model name')[1].split(':')[1].splitlines()[0].strip() if Path('/proc/cpuinfo').exists() else ''})")


if __name__ == "__main__":
    main()
