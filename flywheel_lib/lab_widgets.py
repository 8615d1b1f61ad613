"""The taxonomy lab's interactive form (ipywidgets): pick a category, edit a field, re-judge, see what moved, save.

The logic lives in :class:`TaxonomyEditor` (plain Python, tested without a browser); :meth:`TaxonomyEditor.widget`
wraps it in a small form for JupyterLab::

    editor = TaxonomyEditor(tax, rejudge=lambda t: judge_holdout(t, panel, fewshot, holdout), gold=gold,
                            save_dir="params/taxonomy")
    editor.widget()          # category ▾  field ▾  [text]  (re-judge) (save version)

Every re-judge goes through the verdict cache, so only prompts that the edit changed cost anything; each result is
compared with the version the editor started from (kappa per judge, the items whose verdict moved).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pandas as pd

from .taxonomy import Taxonomy
from .taxonomy_lab import LabReport, compare_versions

__all__ = ["TaxonomyEditor", "EDITABLE_FIELDS"]

EDITABLE_FIELDS = ("description", "rule", "add_positive", "add_negative", "suggestion", "reason_key")
"""What the form may change (see :meth:`Taxonomy.edited`)."""


class TaxonomyEditor:
    """Edit one taxonomy interactively; ``rejudge(taxonomy) -> verdicts`` judges the hold-out under a version."""

    def __init__(self, taxonomy: Taxonomy, *, rejudge: Callable[[Taxonomy], pd.DataFrame], gold: pd.Series,
                 save_dir: str | Path, baseline: pd.DataFrame | None = None):
        self.base = taxonomy
        self.current = taxonomy
        self.rejudge = rejudge
        self.gold = gold
        self.save_dir = Path(save_dir)
        self.baseline_ = baseline if baseline is not None else rejudge(taxonomy)
        """Verdicts under the version the editor started from."""
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
        self.history_.append({"category": category, "field": field, "value": value,
                              "version": self.current.version_id,
                              **{f"kappa_change_{r.judge}": r.kappa_change for r in self.report_.kappa.itertuples()}})
        return self.report_

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
                display(rep.kappa.round(3))
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
