"""``finetune.json``: what 04_finetune hands 05_evaluate and 06_flywheel, as a typed record.

04 writes it through :class:`FinetuneRecord` (so a missing or mistyped field fails where it is made); 05 and 06
read it with :func:`read_finetune` and use attributes (``ft.system_prompt``, ``ft.variants["curated"].model_ref``).
Fields the record does not name (a backend's own figures) are kept as they are.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["FinetuneRecord", "VariantRecord", "HeadRecord", "read_finetune"]


class VariantRecord(BaseModel):
    """One trained variant: where its model is and how it was trained (plus the backend's own figures)."""

    model_config = ConfigDict(extra="allow")
    variant: str
    backend: str
    model_ref: str
    """A folder of the run that trained it (local LoRA) or a remote model id (fine-tuning API)."""
    base_model: str = ""
    steps: int | None = None
    n_train: int | None = None


class HeadRecord(BaseModel):
    """The decision head fitted beside the adapters."""

    model_config = ConfigDict(extra="allow")
    kind: str
    C: float | None = None
    refusal_threshold: float | None = None
    rows: str = "all"
    n_fit: dict[str, Any] = {}


class FinetuneRecord(BaseModel):
    """``artifacts/finetune.json``."""

    model_config = ConfigDict(extra="allow")
    backend: Literal["local-lora", "openai"] | str
    base_model: str
    options: dict[str, Any] = {}
    system_prompt: str
    target_format: str = ""
    decision_head: HeadRecord | None = None
    variants: dict[str, VariantRecord]

    @property
    def local(self) -> bool:
        """Whether the variants are local adapters this machine generates with."""
        return self.backend == "local-lora"


def read_finetune(view) -> FinetuneRecord:
    """The ``finetune`` record of a stage or run view (a clear error names the run and the field)."""
    from pydantic import ValidationError

    raw = view.read_json("finetune")
    try:
        return FinetuneRecord.model_validate(raw)
    except ValidationError as e:
        where = "; ".join(f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors())
        raise ValueError(f"run {getattr(view, 'run_id', '?')}: artifacts/finetune.json: {where}") from None
