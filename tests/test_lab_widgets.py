"""The taxonomy lab's editor: an edit re-judges through a real offline panel, reports what moved, saves a version."""

from __future__ import annotations

import pytest
import yaml

from flywheel_lib.lab_widgets import TaxonomyEditor
from flywheel_lib.taxonomy import load_taxonomy
from flywheel_lib.taxonomy_lab import judge_holdout
from flywheel_lib.testing import toy_items, toy_seed

PANEL = {"name": "lab", "judges": [{"name": "linear", "backend": "linear", "model": "tfidf-logreg",
                                    "params": {"C": 4.0, "min_proba": 0.0}}]}


@pytest.fixture
def editor(tmp_path):
    panel = tmp_path / "panel.yaml"
    panel.write_text(yaml.safe_dump(PANEL))
    tax = load_taxonomy("params/taxonomy/segments.yaml")
    seed, holdout = toy_seed(), toy_items()
    gold = holdout.set_index("item_id")["label"]
    return TaxonomyEditor(tax, gold=gold, save_dir=tmp_path / "tax",
                          rejudge=lambda t: judge_holdout(t, str(panel), seed, holdout, cache_dir=tmp_path / "c"))


def test_an_edit_rejudges_compares_and_saves(editor, tmp_path):
    # a careless edit: needs-context phrasings taught as missing capabilities; the lab must show the damage
    extra = ["customers who bought that product again later", "people who clicked the campaign we discussed before",
             "customers who bought that product again last week", "people who clicked that campaign we discussed"]
    rep = editor.edit("missing_capability", "add_positive", extra)
    assert list(rep.kappa["judge"]) == ["linear"]
    assert len(rep.moved) > 0 and set(rep.moved.columns) >= {"item_id", "before", "after", "gold"}
    assert rep.kappa["kappa_change"].iloc[0] < 0
    assert editor.history_[-1]["category"] == "missing_capability" and "kappa_change_linear" in editor.history_[-1]
    assert editor.current.version == editor.base.version + 1
    path = editor.save()
    saved = yaml.safe_load(path.read_text())
    cat = next(c for c in saved["categories"] if c["id"] == "missing_capability")
    assert set(extra) <= set(cat["examples"]["positive"]) and path.name.endswith(f".v{saved['version']}.yaml")


def test_bad_edits_say_why_and_change_nothing(editor):
    with pytest.raises(ValueError, match="not editable"):
        editor.edit("ambiguous", "title", "x")
    with pytest.raises(ValueError, match="non-empty"):
        editor.edit("ambiguous", "rule", "  ")
    with pytest.raises(ValueError, match="nothing to save"):
        editor.save()
    assert editor.current is editor.base


def test_the_form_builds(editor):
    form = editor.widget()
    assert type(form).__name__ == "VBox" and len(form.children) == 5
    assert editor.history_ == [] and editor.current is editor.base  # building the form edits nothing
