"""The openai backend's job flow against a real local HTTP server speaking the fine-tuning endpoints."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from pydantic import ValidationError

from flywheel_lib.testing.openai_ft_server import FineTuneServer
from flywheel_lib.training import build_dataset, get_backend, save_dataset


def _dataset(n_solvable: int):
    specs = [dict(item_id=f"s{n}", text=f"customers who spent over ${n}", label="solvable",
                  output=f"amount_spent > {n}", reason_key="amount_spent") for n in range(n_solvable)]
    specs += [dict(item_id=f"w{w}", text=f"what were my sales in week {w}", label="wrong_skill", output=None,
                   reason_key="analytics") for w in range(4)]
    return build_dataset(pd.DataFrame(specs).assign(variant="curated"), variant="curated", val_frac=0.25, seed=1)


@pytest.fixture
def server():
    with FineTuneServer(min_examples=10) as srv:
        yield srv


def test_job_flow_succeeds_and_records_model_id(server, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    ds = _dataset(16)
    save_dataset(ds, tmp_path / "data")
    backend = get_backend("openai", base_model="gpt-4o-mini-2024-07-18", n_epochs=2, seed=7,
                          base_url=server.base_url, poll_interval_s=0.01, progress=False)
    res = backend.train(ds, out_dir=tmp_path / "model")
    job_id = res.metrics["job_id"]
    assert res.model_ref == f"ft:gpt-4o-mini-2024-07-18:flywheel:curated:{job_id[-8:]}"
    assert res.backend == "openai" and res.metrics["status"] == "succeeded"
    # The uploaded training file is the saved JSONL, byte for byte.
    job = server.jobs[job_id]
    assert server.blobs[job["training_file"]] == (tmp_path / "data" / "train.jsonl").read_bytes()
    assert job["validation_file"] in server.files and job["hyperparameters"] == {"n_epochs": 2}
    assert job["seed"] == 7
    record = json.loads((tmp_path / "model" / "job.json").read_text())
    assert record["statuses"] == ["validating_files", "queued", "running", "succeeded"]
    assert list(res.log["loss"].round(3)) == [2.0, 1.0, 0.667]
    assert ("POST", "/v1/files") in server.requests
    assert ("GET", f"/v1/fine_tuning/jobs/{job_id}/events") in server.requests


def test_invalid_training_file_fails_the_job(server, tmp_path):
    ds = _dataset(3)  # 7 rows, 2 held out: 5 training examples, fewer than the server's minimum of 10
    backend = get_backend("openai", base_url=server.base_url, poll_interval_s=0.01, progress=False)
    with pytest.raises(RuntimeError, match="failed: training file has 5 examples"):
        backend.train(ds, out_dir=tmp_path / "model")
    record = json.loads((tmp_path / "model" / "job.json").read_text())
    assert record["status"] == "failed" and record["error"]["code"] == "invalid_training_file"


def test_missing_api_key_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("FLYWHEEL_TEST_KEY", raising=False)
    backend = get_backend("openai", api_key_env="FLYWHEEL_TEST_KEY", progress=False)
    with pytest.raises(RuntimeError, match="set FLYWHEEL_TEST_KEY"):
        backend.train(_dataset(16), out_dir=tmp_path)


def test_unknown_option_is_rejected():
    with pytest.raises(ValidationError, match="n_epoch"):
        get_backend("openai", n_epoch=3)
    with pytest.raises(KeyError, match="unknown fine-tune backend"):
        get_backend("sagemaker")
