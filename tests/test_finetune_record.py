"""finetune.json as a typed record: 04 writes it through the model, 05/06 and the run view read attributes, and a
broken record fails naming the run and the field."""

from __future__ import annotations

import json

import pytest

from flywheel_lib.training.record import FinetuneRecord, read_finetune


class _View:
    run_id = "20261201-000000_demo_abc123"

    def __init__(self, data):
        self.data = data

    def read_json(self, name):
        assert name == "finetune"
        return json.loads(json.dumps(self.data))


RECORD = {"backend": "local-lora", "base_model": "smollm2-135m", "system_prompt": "Write a query",
          "options": {"max_steps": 3}, "decision_head": {"kind": "hybrid", "C": 8.0, "n_fit": {"curated": 40}},
          "variants": {"curated": {"variant": "curated", "backend": "local-lora", "model_ref": "artifacts/models/c",
                                   "steps": 3, "loss_last": 0.5}}}


def test_a_record_reads_as_attributes_and_keeps_the_backends_own_fields():
    ft = read_finetune(_View(RECORD))
    assert ft.local and ft.variants["curated"].model_ref == "artifacts/models/c"
    assert ft.decision_head is not None and ft.decision_head.kind == "hybrid"
    assert ft.variants["curated"].model_extra == {"loss_last": 0.5}
    again = FinetuneRecord.model_validate(ft.model_dump(mode="json"))
    assert again == ft


@pytest.mark.parametrize("edit, field", [
    (lambda d: d.pop("system_prompt"), "system_prompt"),
    (lambda d: d["variants"]["curated"].pop("model_ref"), "variants.curated.model_ref"),
    (lambda d: d["variants"]["curated"].update(steps="many"), "variants.curated.steps"),
])
def test_a_broken_record_names_the_run_and_the_field(edit, field):
    data = json.loads(json.dumps(RECORD))
    edit(data)
    with pytest.raises(ValueError, match=field) as e:
        read_finetune(_View(data))
    assert _View.run_id in str(e.value) and "finetune.json" in str(e.value)
