"""Fine-tuning: dataset building (dedup, stratified split, chat formatting) and backends behind one interface.

    from flywheel_lib.training import build_dataset, save_dataset, get_backend
    ds = build_dataset(train_sets, variant="curated", taxonomy=tax, seed=7)
    save_dataset(ds, st.path("datasets/curated", ext=""))          # st: the stage (flywheel_lib.stage)
    backend = get_backend("local-lora", base_model="smollm2-135m", max_steps=100)
    result = backend.train(ds, out_dir=st.path("models/curated", ext=""))

Backends: ``local-lora`` (transformers + peft, CPU or GPU) and ``openai`` (the fine-tuning API, or any server that
speaks its endpoints). torch/transformers/openai are imported inside the backends, so this package imports light.
"""

from .base import BACKENDS, FineTuneBackend, TrainResult, get_backend, register_backend
from .datasets import (
    BuiltDataset,
    build_dataset,
    dedup,
    format_chat,
    near_duplicate_key,
    save_dataset,
    split_validation,
)
from .targets import SYSTEM_PROMPT, Answer, format_target, parse_answer

__all__ = [
    "BACKENDS", "FineTuneBackend", "TrainResult", "get_backend", "register_backend",
    "BuiltDataset", "build_dataset", "dedup", "format_chat", "near_duplicate_key", "save_dataset", "split_validation",
    "SYSTEM_PROMPT", "Answer", "format_target", "parse_answer",
]
