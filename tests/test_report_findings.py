"""The run's index.html leads with what the cycle found: the promotion decision and the two paired tables (production-only vs curated, naive merge vs curated)."""

from __future__ import annotations

import pandas as pd

from flywheel_lib.paths import artifact_path
from flywheel_lib.runner.report import write_index


def test_index_leads_with_the_findings(tmp_path):
    run = tmp_path / "20261201-000000_demo_abc123"
    artifact_path(run, "comparisons").parent.mkdir(parents=True)
    rows = []
    for table, a in (("production_vs_curated", "production_only"), ("naive_vs_curated", "naive_merge")):
        rows.append({"table": table, "metric": "pass_rate", "a": a, "b": "curated", "n": 400, "rate_a": 0.40,
                     "rate_b": 0.55, "diff": 0.15, "a_only": 10, "b_only": 70, "p_value": 1.2e-6})
    pd.DataFrame(rows).to_parquet(artifact_path(run, "comparisons"))
    m = {"run_id": run.name, "recipe": "demo", "status": "succeeded",
         "headline_by_stage": {"05_evaluate": {"pass_rate_curated": 0.55}},
         "notes": {"05_evaluate": {"promotion": {"promoted": True, "candidate": "curated",
                                                 "baseline": "production_only", "winner": "curated",
                                                 "reason": "pass rate +0.150 (p = 1.2e-06)"}},
                   "06_flywheel": {"cycle_verdict": "first cycle of its lineage: nothing to compare with yet"}}}
    html = write_index(run, m).read_text()
    found, headline = html.index("What this cycle found"), html.index("<h2>Headline")
    assert found < headline
    assert "deployed <b>curated</b>" in html and "pass rate +0.150" in html
    assert "Production-only model vs curated" in html and "Naive merge vs curated" in html
    assert html.count("1.2e-06") >= 2 and "+0.150" in html
    assert "first cycle of its lineage" in html


def test_index_without_an_evaluation_has_no_findings_section(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    html = write_index(run, {"run_id": "r", "status": "succeeded"}).read_text()
    assert "What this cycle found" not in html


def test_a_saved_figure_leaves_no_machine_path_in_the_notebook(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from flywheel_lib.stage import open_stage

    (tmp_path / "run").mkdir()
    st = open_stage(tmp_path / "run", "05_evaluate")
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    assert st.figure(fig, "x") is None  # a cell ending with it shows no Out[...] PosixPath
    assert (tmp_path / "run" / "figures" / "05_evaluate__x.png").exists()


def test_headline_cards_show_intervals_at_one_precision():
    from flywheel_lib.runner.report import headline_cells

    head = {"pass_rate_curated": 0.69512, "pass_rate_curated_lo": 0.649, "p_curated_vs_naive": 1.834e-8,
            "train_curated": 21700, "promoted": True}
    metrics = {**head, "pass_rate_curated_hi": 0.7381}
    rows = dict(headline_cells(head, metrics))
    assert rows == {"pass_rate_curated": "0.695 [0.649, 0.738]", "p_curated_vs_naive": "1.8e-08",
                    "train_curated": "21,700", "promoted": "True"}
