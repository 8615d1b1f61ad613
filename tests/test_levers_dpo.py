"""Lever 4's training: real DPO steps on SmolLM2 (its 2-layer cut) lower the DPO loss; the OpenAI DPO job flow on the
local server."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from flywheel_lib.levers import to_openai_jsonl
from flywheel_lib.testing.openai_ft_server import FineTuneServer
from flywheel_lib.training import get_backend

PAIRS = pd.DataFrame([
    dict(prompt=f"customers by {what}", chosen=f"REFUSE missing_capability: The store does not record {what}.",
         rejected=f"amount_spent > {100000000 + i}")
    for i, what in enumerate(["shoe size", "zodiac sign", "eye colour", "employer", "height", "pet name"])
])


@pytest.mark.slow
def test_a_few_dpo_steps_lower_the_dpo_loss(tmp_path):
    from flywheel_lib.levers.dpo import DPOConfig, train_dpo

    cfg = DPOConfig(base_model="smollm2-135m-2l", max_steps=6, batch_size=3, lr=2e-3, beta=0.5, max_len=64,
                    progress=False, threads=2)
    res = train_dpo(PAIRS, cfg, tmp_path / "dpo")
    m = res.metrics
    assert m["loss_before"] == pytest.approx(0.6931, abs=1e-3)      # policy == reference at the start
    assert m["loss_after"] < m["loss_before"] - 0.05
    assert m["reward_accuracy_after"] > 0.5
    assert (tmp_path / "dpo" / "adapter_config.json").exists() and len(res.log) == 6
    # Training again from the saved adapter starts at log 2 (the adapter is the new reference) and loads it.
    res2 = train_dpo(PAIRS, cfg.model_copy(update={"max_steps": 1}), tmp_path / "dpo2", adapter=str(tmp_path / "dpo"))
    assert res2.metrics["loss_before"] == pytest.approx(0.6931, abs=1e-3)
    assert res2.metrics["start_adapter"] == str(tmp_path / "dpo")


def _pairs(n):
    return pd.concat([PAIRS] * (n // len(PAIRS) + 1), ignore_index=True).iloc[:n]


def test_openai_dpo_job_flow(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    path = to_openai_jsonl(_pairs(12), tmp_path / "pairs.jsonl")
    with FineTuneServer(min_examples=10) as srv:
        backend = get_backend("openai", base_model="ft:gpt-4o-mini:flywheel:curated:abc", n_epochs=1,
                              base_url=srv.base_url, poll_interval_s=0.01, progress=False)
        res = backend.train_dpo(path, variant="curated_dpo", out_dir=tmp_path / "job", beta=0.2)
        job = srv.jobs[res.metrics["job_id"]]
        assert job["method"] == {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2, "n_epochs": 1}}}
        assert srv.blobs[job["training_file"]] == path.read_bytes()
        assert res.model_ref.startswith("ft:ft:gpt-4o-mini:flywheel:curated:abc:flywheel:curated-dpo:")
        rec = json.loads((tmp_path / "job" / "job.json").read_text())
        assert rec["statuses"] == ["validating_files", "queued", "running", "succeeded"]
        assert list(res.log["loss"]) == sorted(res.log["loss"], reverse=True) and len(res.log) == 3
        # A supervised chat file sent as a DPO job fails validation with the line named.
        chat = tmp_path / "chat.jsonl"
        chat.write_text("\n".join(json.dumps({"messages": [{"role": "user", "content": "x"},
                                                           {"role": "assistant", "content": "y"}]})
                                  for _ in range(12)))
        with pytest.raises(RuntimeError, match="line 1: missing 'input.messages'"):
            backend.train_dpo(chat, variant="bad", out_dir=tmp_path / "bad")
        # A preference file too short fails too.
        short = to_openai_jsonl(_pairs(3), tmp_path / "short.jsonl")
        with pytest.raises(RuntimeError, match="3 examples, at least 10"):
            backend.train_dpo(short, variant="short", out_dir=tmp_path / "short")
