"""The ``openai`` backend: fine-tune through the OpenAI fine-tuning API (or any server speaking its endpoints).

Upload the variant's chat JSONL (``purpose="fine-tune"``), create the job, poll it until it ends, and record the
resulting model id. The API key comes from the environment variable named by ``api_key_env``; with ``base_url`` set
to a local server and no key in the environment, a placeholder is sent. Nothing secret is written to the run.

    backend = get_backend("openai", base_model="gpt-4o-mini-2024-07-18", n_epochs=3)
    result = backend.train(ds, out_dir="outputs/runs/r1/artifacts/models/curated")
    result.model_ref   # "ft:gpt-4o-mini-2024-07-18:org::abc123"
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pandas as pd
from pydantic import BaseModel, ConfigDict

from .base import TrainResult

__all__ = ["OpenAIConfig", "OpenAIBackend", "TERMINAL"]

TERMINAL = ("succeeded", "failed", "cancelled")


class OpenAIConfig(BaseModel):
    """Options of the openai backend (unknown keys are an error)."""

    model_config = ConfigDict(extra="forbid")

    base_model: str = "gpt-4o-mini-2024-07-18"
    """The model to fine-tune."""
    n_epochs: int | None = 3
    """Epochs; None lets the API choose."""
    seed: int | None = 7
    """The job's seed."""
    base_url: str | None = None
    """Another server speaking the API (a local test server, a proxy); None means api.openai.com."""
    api_key_env: str = "OPENAI_API_KEY"
    """The environment variable holding the API key."""
    poll_interval_s: float = 10.0
    """Seconds between job polls."""
    timeout_s: float = 6 * 3600
    """Give up polling after this long (the job keeps running on the provider)."""
    progress: bool = True
    """Print status changes."""


def _client(cfg: OpenAIConfig):
    from openai import OpenAI

    key = os.environ.get(cfg.api_key_env)
    if not key:
        if not cfg.base_url:
            raise RuntimeError(f"the openai fine-tune backend needs an API key: set {cfg.api_key_env}")
        key = "local-server"
    return OpenAI(api_key=key, base_url=cfg.base_url or None, max_retries=3)


def _write_jsonl(df: pd.DataFrame, path: Path) -> Path:
    with open(path, "w") as fh:
        for m in df["messages"]:
            fh.write(json.dumps({"messages": [dict(x) for x in m]}, ensure_ascii=False) + "\n")
    return path


class OpenAIBackend:
    """``openai``: upload, create the job, poll, record the fine-tuned model id. Options: :class:`OpenAIConfig`."""

    name = "openai"

    def __init__(self, **options):
        self.config = OpenAIConfig(**options)

    def train(self, dataset, *, out_dir: str | Path) -> TrainResult:
        cfg = self.config
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = getattr(dataset, "paths", {}) or {}
        train_path = Path(paths.get("train_jsonl") or _write_jsonl(dataset.train, out_dir / "train.jsonl"))
        val_path = None
        if len(dataset.validation):
            val_path = Path(paths.get("validation_jsonl") or _write_jsonl(dataset.validation,
                                                                         out_dir / "validation.jsonl"))
        client = _client(cfg)
        t0 = time.perf_counter()
        with open(train_path, "rb") as fh:
            train_file = client.files.create(file=fh, purpose="fine-tune")
        val_file = None
        if val_path is not None:
            with open(val_path, "rb") as fh:
                val_file = client.files.create(file=fh, purpose="fine-tune")
        kwargs = {"model": cfg.base_model, "training_file": train_file.id,
                  "suffix": (dataset.variant or "flywheel").replace("_", "-")[:40]}
        if val_file is not None:
            kwargs["validation_file"] = val_file.id
        if cfg.n_epochs is not None:
            kwargs["hyperparameters"] = {"n_epochs": cfg.n_epochs}
        if cfg.seed is not None:
            kwargs["seed"] = cfg.seed
        job = client.fine_tuning.jobs.create(**kwargs)
        record = {"job_id": job.id, "training_file": train_file.id,
                  "validation_file": val_file.id if val_file else None, "base_url": cfg.base_url,
                  "statuses": [job.status]}
        (out_dir / "job.json").write_text(json.dumps(record, indent=2))
        while job.status not in TERMINAL:
            if time.perf_counter() - t0 > cfg.timeout_s:
                raise TimeoutError(f"fine-tuning job {job.id} still {job.status} after {cfg.timeout_s:.0f}s; "
                                   f"it keeps running: poll it later by id")
            time.sleep(cfg.poll_interval_s)
            job = client.fine_tuning.jobs.retrieve(job.id)
            if job.status != record["statuses"][-1]:
                record["statuses"].append(job.status)
                if cfg.progress:
                    print(f"{dataset.variant}: job {job.id} {job.status}")
        events = list(client.fine_tuning.jobs.list_events(fine_tuning_job_id=job.id, limit=100))
        record.update(status=job.status, fine_tuned_model=job.fine_tuned_model, trained_tokens=job.trained_tokens,
                      error=job.error.model_dump() if job.error else None)
        (out_dir / "job.json").write_text(json.dumps(record, indent=2, default=str))
        if job.status != "succeeded":
            msg = job.error.message if job.error else job.status
            raise RuntimeError(f"fine-tuning job {job.id} for variant {dataset.variant!r} {job.status}: {msg}")
        rows = [{"variant": dataset.variant, "step": (e.data or {}).get("step"),
                 "loss": (e.data or {}).get("train_loss"), "message": e.message, "created_at": e.created_at}
                for e in reversed(events)]
        log = pd.DataFrame(rows)
        metrics_log = log.dropna(subset=["loss"]) if len(log) else log
        metrics = {"job_id": job.id, "status": job.status, "trained_tokens": job.trained_tokens,
                   "seconds": round(time.perf_counter() - t0, 2), "n_train": len(dataset.train),
                   "n_validation": len(dataset.validation),
                   "loss_last": float(metrics_log["loss"].iloc[-1]) if len(metrics_log) else None}
        return TrainResult(dataset.variant, "openai", job.fine_tuned_model, cfg.base_model,
                           metrics_log[["variant", "step", "loss"]].reset_index(drop=True) if len(metrics_log)
                           else pd.DataFrame(columns=["variant", "step", "loss"]), metrics)

    def train_dpo(self, pairs_jsonl: str | Path, *, variant: str = "curated_dpo", out_dir: str | Path,
                  beta: float | None = 0.1, base_model: str | None = None) -> TrainResult:
        """Submit a preference (DPO) job: upload ``pairs_jsonl`` (the OpenAI preference format, see
        :func:`flywheel_lib.levers.to_openai_jsonl`), create the job with ``method = {"type": "dpo"}`` on
        ``base_model`` (default: the config's; a fine-tuned SFT model id continues from it), poll, record the model.
        """
        cfg = self.config
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        client = _client(cfg)
        t0 = time.perf_counter()
        with open(pairs_jsonl, "rb") as fh:
            train_file = client.files.create(file=fh, purpose="fine-tune")
        hp = {k: v for k, v in (("beta", beta), ("n_epochs", cfg.n_epochs)) if v is not None}
        kwargs = {"model": base_model or cfg.base_model, "training_file": train_file.id,
                  "suffix": variant.replace("_", "-")[:40], "method": {"type": "dpo", "dpo": {"hyperparameters": hp}}}
        if cfg.seed is not None:
            kwargs["seed"] = cfg.seed
        job = client.fine_tuning.jobs.create(**kwargs)
        record = {"job_id": job.id, "method": "dpo", "training_file": train_file.id, "base_url": cfg.base_url,
                  "statuses": [job.status]}
        while job.status not in TERMINAL:
            if time.perf_counter() - t0 > cfg.timeout_s:
                raise TimeoutError(f"DPO job {job.id} still {job.status} after {cfg.timeout_s:.0f}s; poll it later")
            time.sleep(cfg.poll_interval_s)
            job = client.fine_tuning.jobs.retrieve(job.id)
            if job.status != record["statuses"][-1]:
                record["statuses"].append(job.status)
        record.update(status=job.status, fine_tuned_model=job.fine_tuned_model, trained_tokens=job.trained_tokens,
                      error=job.error.model_dump() if job.error else None)
        (out_dir / "job.json").write_text(json.dumps(record, indent=2, default=str))
        if job.status != "succeeded":
            msg = job.error.message if job.error else job.status
            raise RuntimeError(f"DPO job {job.id} for variant {variant!r} {job.status}: {msg}")
        events = list(client.fine_tuning.jobs.list_events(fine_tuning_job_id=job.id, limit=100))
        log = pd.DataFrame([{"variant": variant, "step": (e.data or {}).get("step"),
                             "loss": (e.data or {}).get("train_loss")} for e in reversed(events)])
        log = log.dropna(subset=["loss"]).reset_index(drop=True) if len(log) else \
            pd.DataFrame(columns=["variant", "step", "loss"])
        metrics = {"job_id": job.id, "method": "dpo", "status": job.status, "trained_tokens": job.trained_tokens,
                   "seconds": round(time.perf_counter() - t0, 2)}
        return TrainResult(variant, "openai", job.fine_tuned_model, kwargs["model"], log, metrics)
