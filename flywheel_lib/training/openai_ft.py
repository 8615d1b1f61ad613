"""The ``openai`` backend: fine-tune through the OpenAI fine-tuning API (or any server speaking its endpoints).

Upload the variant's chat JSONL (``purpose="fine-tune"``), create the job, poll it until it ends, and record the
resulting model id. Every call goes through :class:`~flywheel_lib.providers.OpenAIApi`, the client the judges use,
retried on 429 and 5xx. The API key comes from the environment variable named by ``api_key_env``; with ``base_url`` set
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

from ..providers import OpenAIApi
from ..providers.retry import RetryLimits
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


def _api(cfg: OpenAIConfig) -> OpenAIApi:
    """The fine-tuning API's client (a local server without a key gets a placeholder bearer token)."""
    key = os.environ.get(cfg.api_key_env)
    if not key:
        if not cfg.base_url:
            raise RuntimeError(f"the openai fine-tune backend needs an API key: set {cfg.api_key_env}")
        key = "local-server"
    return OpenAIApi(cfg.base_url, key, timeout_s=120.0, limits=RetryLimits(max_retries=3))


def _upload(api: OpenAIApi, path: Path) -> str:
    return api.upload_file(Path(path).read_bytes(), filename=Path(path).name, purpose="fine-tune")


def _poll(api: OpenAIApi, cfg: OpenAIConfig, job: dict, t0: float, what: str, on_change=None) -> tuple[dict, list]:
    """Poll a job until it ends; the job and the statuses it went through."""
    statuses = [job["status"]]
    while job["status"] not in TERMINAL:
        if time.perf_counter() - t0 > cfg.timeout_s:
            raise TimeoutError(f"{what} {job['id']} still {job['status']} after {cfg.timeout_s:.0f}s; "
                               f"it keeps running: poll it later by id")
        time.sleep(cfg.poll_interval_s)
        job = api.call_json("GET", f"/fine_tuning/jobs/{job['id']}")
        if job["status"] != statuses[-1]:
            statuses.append(job["status"])
            if on_change is not None:
                on_change(job)
    return job, statuses


def _loss_log(api: OpenAIApi, job_id: str, variant: str) -> pd.DataFrame:
    """The job's events, oldest first: step, loss and message (the API lists them newest first)."""
    events = api.call_json("GET", f"/fine_tuning/jobs/{job_id}/events?limit=100").get("data") or []
    return pd.DataFrame([{"variant": variant, "step": (e.get("data") or {}).get("step"),
                          "loss": (e.get("data") or {}).get("train_loss"), "message": e.get("message"),
                          "created_at": e.get("created_at")} for e in reversed(events)],
                        columns=["variant", "step", "loss", "message", "created_at"])


def _failure(job: dict) -> str:
    err = job.get("error") or {}
    return str(err.get("message") or job["status"]) if isinstance(err, dict) else job["status"]


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
        api = _api(cfg)
        t0 = time.perf_counter()
        train_file = _upload(api, train_path)
        val_file = _upload(api, val_path) if val_path is not None else None
        kwargs = {"model": cfg.base_model, "training_file": train_file,
                  "suffix": (dataset.variant or "flywheel").replace("_", "-")[:40]}
        if val_file is not None:
            kwargs["validation_file"] = val_file
        if cfg.n_epochs is not None:
            kwargs["hyperparameters"] = {"n_epochs": cfg.n_epochs}
        if cfg.seed is not None:
            kwargs["seed"] = cfg.seed
        job = api.call_json("POST", "/fine_tuning/jobs", kwargs)
        record = {"job_id": job["id"], "training_file": train_file, "validation_file": val_file,
                  "base_url": cfg.base_url, "statuses": [job["status"]]}
        (out_dir / "job.json").write_text(json.dumps(record, indent=2))

        def say(j: dict) -> None:
            if cfg.progress:
                print(f"{dataset.variant}: job {j['id']} {j['status']}")

        job, record["statuses"] = _poll(api, cfg, job, t0, "fine-tuning job", say)
        record.update(status=job["status"], fine_tuned_model=job.get("fine_tuned_model"),
                      trained_tokens=job.get("trained_tokens"), error=job.get("error"))
        (out_dir / "job.json").write_text(json.dumps(record, indent=2, default=str))
        if job["status"] != "succeeded":
            raise RuntimeError(f"fine-tuning job {job['id']} for variant {dataset.variant!r} {job['status']}: "
                               f"{_failure(job)}")
        log = _loss_log(api, job["id"], dataset.variant)
        metrics_log = log.dropna(subset=["loss"])
        metrics = {"job_id": job["id"], "status": job["status"], "trained_tokens": job.get("trained_tokens"),
                   "seconds": round(time.perf_counter() - t0, 2), "n_train": len(dataset.train),
                   "n_validation": len(dataset.validation),
                   "loss_last": float(metrics_log["loss"].iloc[-1]) if len(metrics_log) else None}
        return TrainResult(dataset.variant, "openai", job.get("fine_tuned_model"), cfg.base_model,
                           metrics_log[["variant", "step", "loss"]].reset_index(drop=True), metrics)

    def train_dpo(self, pairs_jsonl: str | Path, *, variant: str = "curated_dpo", out_dir: str | Path,
                  beta: float | None = 0.1, base_model: str | None = None) -> TrainResult:
        """Submit a preference (DPO) job: upload ``pairs_jsonl`` (the OpenAI preference format, see
        :func:`flywheel_lib.levers.to_openai_jsonl`), create the job with ``method = {"type": "dpo"}`` on
        ``base_model`` (default: the config's; a fine-tuned SFT model id continues from it), poll, record the model.
        """
        cfg = self.config
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        api = _api(cfg)
        t0 = time.perf_counter()
        train_file = _upload(api, Path(pairs_jsonl))
        hp = {k: v for k, v in (("beta", beta), ("n_epochs", cfg.n_epochs)) if v is not None}
        kwargs = {"model": base_model or cfg.base_model, "training_file": train_file,
                  "suffix": variant.replace("_", "-")[:40], "method": {"type": "dpo", "dpo": {"hyperparameters": hp}}}
        if cfg.seed is not None:
            kwargs["seed"] = cfg.seed
        job = api.call_json("POST", "/fine_tuning/jobs", kwargs)
        record = {"job_id": job["id"], "method": "dpo", "training_file": train_file, "base_url": cfg.base_url,
                  "statuses": [job["status"]]}
        job, record["statuses"] = _poll(api, cfg, job, t0, "DPO job")
        record.update(status=job["status"], fine_tuned_model=job.get("fine_tuned_model"),
                      trained_tokens=job.get("trained_tokens"), error=job.get("error"))
        (out_dir / "job.json").write_text(json.dumps(record, indent=2, default=str))
        if job["status"] != "succeeded":
            raise RuntimeError(f"DPO job {job['id']} for variant {variant!r} {job['status']}: {_failure(job)}")
        log = _loss_log(api, job["id"], variant).dropna(subset=["loss"])[["variant", "step", "loss"]]
        metrics = {"job_id": job["id"], "method": "dpo", "status": job["status"],
                   "trained_tokens": job.get("trained_tokens"), "seconds": round(time.perf_counter() - t0, 2)}
        return TrainResult(variant, "openai", job.get("fine_tuned_model"), kwargs["model"],
                           log.reset_index(drop=True), metrics)
