"""The documentation: the site builds with warnings as errors, the generated pages equal their generators' output,
the results table equals the committed run extract, and the README stays a front page."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from flywheel_lib.cli import main
from flywheel_lib.flywheel.results import BEGIN, END, read_extract, results_table

ROOT = Path(__file__).resolve().parent.parent
MKDOCS = Path(sys.executable).parent / "mkdocs"


def _generator():
    spec = importlib.util.spec_from_file_location("gen_reference", ROOT / "docs" / "gen_reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _between_markers(text: str) -> str:
    m = re.search(re.escape(BEGIN) + r"\n(.*?)" + re.escape(END), text, re.S)
    assert m, "no results markers"
    return m.group(1)


def test_docs_build_strict(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    r = subprocess.run([str(MKDOCS), "build", "--strict", "-q", "-d", str(tmp_path / "site")], cwd=ROOT, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "site" / "reference" / "parameters" / "index.html").is_file()


@pytest.mark.parametrize("page", ["parameters.md", "cli.md", "api.md"])
def test_reference_page_is_current(page):
    gen = _generator()
    committed = (ROOT / "docs" / "reference" / page).read_text(encoding="utf-8")
    assert committed == gen.PAGES[page](), f"docs/reference/{page} is stale: run .venv/bin/python docs/gen_reference.py"


def test_results_tables_match_the_extract():
    from flywheel_lib.flywheel.results import (
        LINEAGE_BEGIN,
        LINEAGE_END,
        SUMMARY_BEGIN,
        SUMMARY_END,
        SWEEP_BEGIN,
        SWEEP_END,
        lineage_table,
        read_sweeps,
        sweep_summary,
        sweep_table,
    )

    table = results_table(read_extract(ROOT / "docs" / "results" / "runs.json"))
    sweeps = read_sweeps(ROOT / "docs" / "results" / "runs.json")
    for page in ("docs/results.md", "README.md"):
        text = (ROOT / page).read_text(encoding="utf-8")
        assert _between_markers(text) == table, (
            f"{page}: run .venv/bin/flywheel report --results docs/results/runs.json")
        if SWEEP_BEGIN in text:
            got = text.split(SWEEP_BEGIN, 1)[1].split(SWEEP_END, 1)[0].lstrip("\n")
            assert got == sweep_table(sweeps), f"{page}: the sweep table is stale"
        if SUMMARY_BEGIN in text:
            got = text.split(SUMMARY_BEGIN, 1)[1].split(SUMMARY_END, 1)[0].lstrip("\n")
            assert got == sweep_summary(sweeps), f"{page}: the sweep summary is stale"
        if LINEAGE_BEGIN in text:
            got = text.split(LINEAGE_BEGIN, 1)[1].split(LINEAGE_END, 1)[0].lstrip("\n")
            assert got == lineage_table(read_extract(ROOT / "docs" / "results" / "runs.json")), (
                f"{page}: the lineage table is stale")


def _fake_run(runs: Path, run_id: str, cycle: int, pass_rate: float, promoted: bool) -> Path:
    d = runs / run_id
    d.mkdir(parents=True)
    manifest = {
        "run_id": run_id, "recipe": "demo", "status": "succeeded", "duration_s": 600.0, "machine": "x86_64",
        "parent": {"lineage": "L_lineage", "cycle": cycle, "parent_run": None},
        "git": {"commit": "0123456789abcdef", "branch": "main", "dirty": cycle == 2},
        "params_in_effect": {"05_evaluate": {"candidate": "curated"}},
        "notes": {},
        "metrics": {"05_evaluate": {"n_eval": 40, "pass_rate_curated": pass_rate, "refusal_recall_curated": 0.5,
                                    "false_refusal_rate_curated": 0.25, "query_pass_rate_curated": 0.75,
                                    "pass_rate_naive_merge": 0.1, "promoted": promoted}},
    }
    (d / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return d


def test_report_results_from_run_folders(tmp_path):
    runs = tmp_path / "runs"
    _fake_run(runs, "20990101-000000_demo_bbbbbb", 2, 0.6, False)
    _fake_run(runs, "20990101-000000_demo_aaaaaa", 1, 0.5, True)
    page = tmp_path / "page.md"
    page.write_text(f"# Results\n\n{BEGIN}\nold\n{END}\n\nafter\n", encoding="utf-8")
    extract = tmp_path / "runs.json"
    args = ["report", "--results", str(runs), "--extract", str(extract), "--pages", str(page)]
    assert main(args + ["--check"]) == 1                      # the page is stale; --check writes nothing
    assert not extract.exists()
    assert main(args + ["--cpu", "Test CPU"]) == 0
    got = read_extract(extract)
    assert [r["run_id"] for r in got] == ["20990101-000000_demo_aaaaaa", "20990101-000000_demo_bbbbbb"]
    assert got[0]["commit"] == "0123456" and got[0]["cpu"] == "Test CPU" and got[0]["source"] == "manifest"
    text = page.read_text(encoding="utf-8")
    assert text.endswith("\n\nafter\n") and "old" not in text
    rows = _between_markers(text).splitlines()
    assert rows[2] == "| 20990101-000000_demo_aaaaaa | 1 | 0123456 | Test CPU | 10.0 | 0.500 [0.35, 0.65] | 0.500 | 0.250 | yes |"
    assert rows[3].startswith("| 20990101-000000_demo_bbbbbb | 2 | 0123456-dirty |")
    # the extract alone regenerates the same table, and the page is then current
    assert main(["report", "--results", str(extract), "--pages", str(page), "--check"]) == 0


def test_readme_is_a_front_page():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = text.splitlines()
    assert len(lines) <= 200
    assert [i + 1 for i, line in enumerate(lines) if len(line) > 120] == []
    assert "```bash\nmake test\n```" in text                 # CI's check greps this line
    assert "```bash\nmake demo\n```" in text


def test_docs_speak_of_the_product():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    for p in pages:
        text = p.read_text(encoding="utf-8")
        assert not re.search(r"session|round|issue", text, re.I), p
        assert not re.search(r"seed'?s? (document|figure)|the seed's figure", text, re.I), p


def test_lineage_table_shows_both_slices_of_a_later_cycle(tmp_path):
    from flywheel_lib.flywheel.results import extract_run, lineage_table, results_table

    d = _fake_run(tmp_path, "20990101-000000_demo_cccccc", 2, 0.6, True)
    m = json.loads((d / "manifest.json").read_text())
    m["metrics"]["05_evaluate"].update({
        "pass_rate_curated_drift": 0.9, "pass_rate_curated_drift_lo": 0.85, "pass_rate_curated_drift_hi": 0.93,
        "pass_rate_deployed_prev_drift": 0.7, "pass_rate_deployed_prev_drift_lo": 0.65,
        "pass_rate_deployed_prev_drift_hi": 0.77, "pass_rate_curated_original": 0.71,
        "pass_rate_deployed_prev_original": 0.70, "diff_drift_candidate_vs_deployed": 0.2,
        "p_drift_candidate_vs_deployed": 1.8e-8, "diff_original_candidate_vs_deployed": 0.01,
        "pass_rate_deployed_store_drift": 0.75, "store_gap_share": 0.25, "store_gap_share_new": 0.3,
        "oracle_gap_closed": 0.8,
        "elo_curated": 1010.0, "elo_deployed_prev": 1000.0})
    m["metrics"]["06_flywheel"] = {"new_scenarios_labelled_panel": 440, "new_scenarios_labelled_review": 584,
                                   "new_scenarios_kept_logged": 120, "new_scenarios_left_out": 60,
                                   "patterns_fixed": 1}
    m["parent"]["reused_stages"] = ["00_data", "01_calibrate", "02_judge", "03_resolve", "04_finetune"]
    m["stage_order"] = [*m["parent"]["reused_stages"], "05_evaluate", "06_flywheel"]
    m["duration_s"] = 600
    (d / "manifest.json").write_text(json.dumps(m))
    first = _fake_run(tmp_path, "20990101-000000_demo_dddddd", 1, 0.5, True)
    rows = lineage_table([extract_run(first), extract_run(d)]).splitlines()
    assert len(rows) == 3  # a first cycle has no drift slice: no row
    assert rows[2] == ("| 20990101-000000_demo_cccccc | 2 | 0.700 [0.65, 0.77] → 0.900 [0.85, 0.93] | +0.200 (1.8e-08) "
                       "| 0.700 → 0.710 | +0.010 | 0.750 (0.25 / 0.30) | 1010 / 1000 | – (–) | 0.80 | 440 / 584 / 120 / 60 | yes |")
    assert "| 10.0 (05-06) |" in results_table([extract_run(d)])  # the stages it ran, the rest reused
