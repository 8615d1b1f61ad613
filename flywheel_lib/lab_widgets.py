"""The taxonomy lab's interactive form (ipywidgets): pick a category, edit a field, re-judge, see what moved, save.

The logic lives in :class:`TaxonomyEditor` (plain Python, tested without a browser); :meth:`TaxonomyEditor.widget`
wraps it in a small form for JupyterLab::

    editor = TaxonomyEditor(tax, rejudge=lambda t: judge_holdout(t, panel, fewshot, holdout), gold=gold,
                            save_dir="params/taxonomy")
    editor.widget()          # category ▾  field ▾  [text]  (re-judge) (save version)

Every re-judge goes through the verdict cache, so only prompts that the edit changed cost anything; each result is
compared with the version the editor started from (kappa per judge, the items whose verdict moved), on the seed's
hold-out and, given ``rejudge_production`` and ``production_gold`` (a production slice with a hidden truth), on
production too; :meth:`TaxonomyEditor.scores` labels the two.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from .taxonomy import Taxonomy
from .taxonomy_lab import LabReport, compare_versions, scores_table

__all__ = ["TaxonomyEditor", "EDITABLE_FIELDS"]

EDITABLE_FIELDS = ("description", "rule", "add_positive", "add_negative", "suggestion", "reason_key")
"""What the form may change (see :meth:`Taxonomy.edited`)."""


class TaxonomyEditor:
    """Edit one taxonomy interactively; ``rejudge(taxonomy) -> verdicts`` judges the hold-out under a version,
    ``rejudge_production`` (optional) a production slice whose truth is ``production_gold``."""

    def __init__(self, taxonomy: Taxonomy, *, rejudge: Callable[[Taxonomy], pd.DataFrame], gold: pd.Series,
                 save_dir: str | Path, baseline: pd.DataFrame | None = None,
                 rejudge_production: Callable[[Taxonomy], pd.DataFrame] | None = None,
                 production_gold: pd.Series | None = None, production_baseline: pd.DataFrame | None = None):
        self.base = taxonomy
        self.current = taxonomy
        self.rejudge = rejudge
        self.gold = gold
        self.save_dir = Path(save_dir)
        self.baseline_ = baseline if baseline is not None else rejudge(taxonomy)
        """Verdicts under the version the editor started from."""
        self.rejudge_production = rejudge_production
        self.production_gold = production_gold
        self.production_baseline_ = None
        """Verdicts on the production slice under the starting version (None without a slice)."""
        if rejudge_production is not None:
            if production_gold is None:
                raise ValueError("rejudge_production needs production_gold, the slice's hidden truth")
            self.production_baseline_ = (production_baseline if production_baseline is not None
                                         else rejudge_production(taxonomy))
        self.production_report_: LabReport | None = None
        """The last comparison on the production slice (None without a slice)."""
        self.history_: list[dict] = []
        """One entry per edit: category, field, value, version and the kappa change per judge."""
        self.report_: LabReport | None = None
        """The last comparison with the starting version."""

    def edit(self, category: str, field: str, value: str) -> LabReport:
        """Apply one edit to the current version, re-judge, and compare with the starting version."""
        if field not in EDITABLE_FIELDS:
            raise ValueError(f"field {field!r} is not editable here; choose one of {', '.join(EDITABLE_FIELDS)}")
        if not str(value).strip():
            raise ValueError(f"an edit of {category}.{field} needs a non-empty value")
        self.current = self.current.edited(category, field, value)
        after = self.rejudge(self.current)
        self.report_ = compare_versions(self.baseline_, after, self.gold, labels=self.base.ids)
        entry = {"category": category, "field": field, "value": value, "version": self.current.version_id,
                 **{f"kappa_change_{r.judge}": r.kappa_change for r in self.report_.kappa.itertuples()}}
        if self.rejudge_production is not None:
            self.production_report_ = compare_versions(self.production_baseline_, self.rejudge_production(self.current),
                                                       self.production_gold, labels=self.base.ids)
            entry.update({f"production_kappa_change_{r.judge}": r.kappa_change
                          for r in self.production_report_.kappa.itertuples()})
        self.history_.append(entry)
        return self.report_

    def scores(self) -> pd.DataFrame:
        """The last edit's kappa per judge before and after, one row per judge and slice, each slice named
        (the seed out of fold; the production slice against its truth, when there is one)."""
        if self.report_ is None:
            raise ValueError("no edit was made yet")
        return scores_table(self.report_, self.production_report_, n_seed=len(self.gold),
                            n_production=0 if self.production_gold is None else len(self.production_gold))

    def save(self) -> Path:
        """Write the current version as ``<save_dir>/<name>.v<version>.yaml``."""
        if self.current is self.base:
            raise ValueError("nothing to save: no edit was made")
        path = self.save_dir / f"{self.current.name}.v{self.current.version}.yaml"
        return self.current.save(path)

    def widget(self):
        """The form: category and field pickers, a text box, re-judge and save buttons, and the result below."""
        import ipywidgets as w
        from IPython.display import display

        cat = w.Dropdown(options=self.base.ids, description="category")
        field = w.Dropdown(options=list(EDITABLE_FIELDS), description="field")
        text = w.Textarea(placeholder="new text (a description or rule replaces; an example is appended)",
                          layout=w.Layout(width="95%", height="5em"))
        current = w.HTML()
        run, save = w.Button(description="re-judge", button_style="primary"), w.Button(description="save version")
        out = w.Output()

        def show_current(*_):
            c = self.current[cat.value]
            shown = {"description": c.description, "rule": c.rule or "", "suggestion": c.suggestion or "",
                     "reason_key": c.reason_key or "", "add_positive": "; ".join(c.examples.positive),
                     "add_negative": "; ".join(c.examples.negative)}[field.value]
            current.value = f"<small><b>now:</b> {shown}</small>"

        def on_run(_):
            with out:
                out.clear_output()
                try:
                    rep = self.edit(cat.value, field.value, text.value)
                except Exception as e:  # noqa: BLE001 - the form says what went wrong and stays usable
                    print(f"not applied: {e}")
                    return
                print(f"version {self.current.version_id}: kappa per judge against the starting version")
                display(self.scores().round(3))
                print(f"{len(rep.moved)} verdicts moved")
                display(rep.moved.head(20))
                show_current()

        def on_save(_):
            with out:
                try:
                    print(f"saved {self.save().name}")
                except Exception as e:  # noqa: BLE001
                    print(f"not saved: {e}")

        cat.observe(show_current, names="value")
        field.observe(show_current, names="value")
        run.on_click(on_run)
        save.on_click(on_save)
        show_current()
        return w.VBox([w.HBox([cat, field]), current, text, w.HBox([run, save]), out])
